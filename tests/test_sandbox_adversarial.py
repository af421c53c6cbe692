"""Hostile programs against the sandbox (issue 9).

Every attack must be contained within its timeout + 2 s, leave this (pytest) process healthy, leave no
process running (found by the sandbox marker and by a unique token in the command line), leave the
canary files outside the sandbox unchanged, and come back as a structured :class:`SandboxResult`.

Attacks on the file system and on other processes need one of the strong layers (a separate uid when
running as root, or bubblewrap); where neither holds (a non-root machine without bwrap), those attacks
are skipped with the reason, since the plain process mode does not claim to stop them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowsteer.errors import UserError
from flowsteer.sandbox import Sandbox, SandboxLimits, SandboxResult

TIMEOUT = 2.0
SECRET = f"sk-adversarial-{uuid.uuid4().hex}"
REPO = Path(__file__).resolve().parents[1]
PARENT_HOME = Path(os.path.expanduser("~"))
CANARY_DIR = Path(f"/tmp/flowsteer-canary-{os.getpid()}")
CANARY = CANARY_DIR / "canary.txt"
CANARY_TEXT = "do not touch\n"
CLONE_NEWPID = 0x20000000


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    statuses: frozenset[str]
    """Acceptable result statuses."""
    check: Callable[[SandboxResult, dict], None] | None = None
    needs: str | None = None
    """"fs": needs a separate uid or bwrap; "kill": needs those or a PID namespace."""
    stdin: str | None = None
    forbidden_paths: tuple[str, ...] = field(default_factory=tuple)
    """Paths (after substitution) that must not exist after the run."""


ANY = frozenset({"ok", "error", "timeout", "killed"})
FAILED = frozenset({"error", "killed"})
TIMEOUT_ONLY = frozenset({"timeout"})


def _no_secret(result: SandboxResult, ctx: dict) -> None:
    assert SECRET not in result.stdout and SECRET not in result.stderr


def _error_type(*names: str) -> Callable[[SandboxResult, dict], None]:
    def check(result: SandboxResult, ctx: dict) -> None:
        assert result.error_type in names, (result.error_type, result.stderr[-500:])

    return check


def _truncated(result: SandboxResult, ctx: dict) -> None:
    assert result.truncated and len(result.stdout.encode()) <= 64_000 * 2


def _nothing_received(result: SandboxResult, ctx: dict) -> None:
    assert ctx["listener"].connections == 0


def _workdir_removed(result: SandboxResult, ctx: dict) -> None:
    workdir = result.stdout.splitlines()[0]
    assert workdir.startswith("/tmp/flowsteer-sbx-") and not os.path.exists(workdir)


def _denied_lines(result: SandboxResult, ctx: dict) -> None:
    assert "PATH=" not in result.stdout and "denied" in result.stdout
    _no_secret(result, ctx)


DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['sleep', '@TOKEN@'])
    os._exit(0)
time.sleep(0.2)
print('parent done')
"""

ATTACKS = [
    Attack("infinite_loop", "while True:\n    pass", TIMEOUT_ONLY),
    Attack(
        "busy_thread",
        "import threading\ndef spin():\n    while True:\n        pass\nt = threading.Thread(target=spin)\nt.start()\nt.join()",
        TIMEOUT_ONLY,
    ),
    Attack("sleep_forever", "import time\ntime.sleep(10 ** 6)", TIMEOUT_ONLY),
    Attack("fork_bomb", "import os\nwhile True:\n    os.fork()", ANY),
    Attack(
        "fork_bomb_persistent",
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)",
        ANY,
    ),
    Attack(
        "memory_bomb",
        "x = []\nwhile True:\n    x.append(bytearray(10 ** 7))",
        FAILED,
        _error_type("MemoryError", "SIGKILL"),
    ),
    Attack("memory_bomb_string", "s = 'a' * (10 ** 10)", FAILED, _error_type("MemoryError")),
    Attack("recursion_bomb", "def f():\n    return f()\nf()", FAILED, _error_type("RecursionError")),
    Attack(
        "stack_overflow",
        "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)",
        FAILED | TIMEOUT_ONLY,
    ),
    Attack("huge_stdout", "while True:\n    print('x' * 1000)", ANY, _truncated),
    Attack(
        "huge_stderr",
        "import sys\nwhile True:\n    print('e' * 1000, file=sys.stderr)",
        ANY,
        lambda r, c: r.truncated,
    ),
    Attack("huge_single_line", "import sys\nsys.stdout.write('y' * 10 ** 8)", ANY, _truncated),
    Attack(
        "infinite_generator_printing",
        "import itertools\nfor i in itertools.count():\n    print(i)",
        ANY,
        _truncated,
    ),
    Attack(
        "giant_file",
        "with open('big.bin', 'wb') as f:\n    while True:\n        f.write(b'0' * 10 ** 6)",
        FAILED,
        _error_type("OSError", "SIGXFSZ"),
    ),
    Attack(
        "write_tmp_outside",
        "open('/tmp/flowsteer-escape-@TOKEN@', 'w').write('x')",
        ANY,
        needs="fs",
        forbidden_paths=("/tmp/flowsteer-escape-@TOKEN@",),
    ),
    Attack(
        "write_repo",
        f"open('{REPO}/escape-@TOKEN@.txt', 'w').write('x')",
        FAILED,
        needs="fs",
        forbidden_paths=(f"{REPO}/escape-@TOKEN@.txt",),
    ),
    Attack(
        "write_parent_home",
        f"open('{PARENT_HOME}/escape-@TOKEN@', 'w').write('x')",
        FAILED,
        needs="fs",
        forbidden_paths=(f"{PARENT_HOME}/escape-@TOKEN@",),
    ),
    Attack("delete_canary", f"import os\nos.remove('{CANARY}')", FAILED, needs="fs"),
    Attack("overwrite_canary", f"open('{CANARY}', 'w').write('pwned')", FAILED, needs="fs"),
    Attack(
        "chmod_canary",
        f"import os\nos.chmod('{CANARY}', 0o777)\nos.chmod('{CANARY_DIR}', 0o777)",
        FAILED,
        needs="fs",
    ),
    Attack(
        "symlink_to_canary_dir",
        f"import os\nos.symlink('{CANARY_DIR}', 'link')\nos.symlink('{CANARY}', 'file_link')",
        ANY,
    ),
    Attack(
        "chdir_and_chmod_tricks",
        "import os\nprint(os.getcwd())\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\nos.chmod('a/b/c', 0)\nos.chmod('a', 0)\nos.chmod('.', 0)\nos.chdir('/')",
        ANY,
        _workdir_removed,
    ),
    Attack("read_parent_env", "import os\nprint(dict(os.environ))", frozenset({"ok"}), _no_secret),
    Attack(
        "read_proc_ppid_environ",
        "import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())",
        ANY,
        _no_secret,
    ),
    Attack(
        "read_proc_pytest_environ",
        "try:\n    print(open('/proc/@PYTEST_PID@/environ', 'rb').read())\nexcept OSError:\n    print('denied')",
        frozenset({"ok"}),
        _denied_lines,
        needs="fs",
    ),
    Attack(
        "scan_all_environs",
        "import os\nfor p in os.listdir('/proc'):\n    try:\n        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass",
        ANY,
        _no_secret,
        needs="fs",
    ),
    Attack(
        "read_etc_shadow",
        "print(open('/etc/shadow').read())",
        FAILED,
        _error_type("PermissionError", "FileNotFoundError"),
    ),
    Attack(
        "socket_to_localhost",
        "import socket\ns = socket.create_connection(('127.0.0.1', @PORT@), timeout=1)\ns.sendall(b'leak')",
        FAILED,
        _nothing_received,
    ),
    Attack(
        "http_request",
        "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)",
        FAILED,
    ),
    Attack(
        "setsid_sleeper",
        "import subprocess\nsubprocess.Popen(['sleep', '@TOKEN@'], start_new_session=True)\nprint('spawned')",
        ANY,
    ),
    Attack("double_fork_daemon", DAEMON, ANY),
    Attack("daemon_then_hang", DAEMON + "while True:\n    pass\n", TIMEOUT_ONLY),
    Attack(
        "double_fork_clear_env",
        DAEMON.replace(
            "os.execv('/bin/sleep', ['sleep', '@TOKEN@'])",
            "os.execve('/bin/sleep', ['sleep', '@TOKEN@'], {})",
        ),
        ANY,
    ),
    Attack(
        "kill_parent",
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(0.2)",
        ANY,
        needs="kill",
    ),
    Attack(
        "kill_pytest",
        "import os, signal\nos.kill(@PYTEST_PID@, signal.SIGKILL)",
        FAILED,
        _error_type("PermissionError", "ProcessLookupError"),
        needs="fs",
    ),
    Attack(
        "kill_everything",
        "import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(0.2)",
        ANY,
        needs="kill",
    ),
    Attack("kill_own_group", "import os, signal\nos.kill(0, signal.SIGKILL)", ANY),
    Attack(
        "os_exit",
        "import os\nprint('bye', flush=True)\nos._exit(7)",
        frozenset({"error"}),
        lambda r, c: r.exit_code == 7,
    ),
    Attack(
        "close_stdout_stderr",
        "import os\nos.close(1)\nos.close(2)\nraise ValueError('no streams')",
        frozenset({"error"}),
        _error_type("ValueError"),
    ),
    Attack(
        "binary_garbage",
        "import sys, os\nsys.stdout.buffer.write(os.urandom(4000) + b'\\xff\\xfe\\x00')",
        frozenset({"ok"}),
        lambda r, c: isinstance(r.stdout, str),
    ),
    Attack(
        "unicode_output",
        "print('\\u2603 \\U0001F600 \\u05d0\\u05d1 \\x00 end')",
        frozenset({"ok"}),
        lambda r, c: "\U0001f600" in r.stdout,
    ),
    Attack(
        "sys_exit_string",
        "import sys\nsys.exit('custom failure message')",
        frozenset({"error"}),
        lambda r, c: "custom failure message" in r.stderr,
    ),
    Attack(
        "sys_exit_negative", "import sys\nsys.exit(-1)", frozenset({"error"}), lambda r, c: r.exit_code == 255
    ),
    Attack(
        "threads_bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()",
        ANY,
    ),
    Attack(
        "ctypes_segfault", "import ctypes\nctypes.string_at(0)", frozenset({"killed"}), _error_type("SIGSEGV")
    ),
    Attack(
        "keyboard_interrupt",
        "raise KeyboardInterrupt",
        frozenset({"error"}),
        _error_type("KeyboardInterrupt"),
    ),
    Attack(
        "ignore_signals_and_loop",
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass",
        TIMEOUT_ONLY,
    ),
    Attack(
        "stdin_read_hang",
        "import sys\ndata = sys.stdin.read()\nprint(repr(data))\ninput()",
        frozenset({"error"}),
        _error_type("EOFError"),
    ),
    Attack(
        "raise_rlimits",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))",
        frozenset({"error"}),
        _error_type("ValueError", "PermissionError"),
    ),
    Attack("become_root", "import os\nos.setuid(0)\nprint(open('/etc/shadow').read())", FAILED, needs="fs"),
]


class _Listener:
    """A TCP server in this process; a program that reaches it has network access."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def env():
    CANARY_DIR.mkdir(exist_ok=True)
    CANARY_DIR.chmod(0o755)
    CANARY.write_text(CANARY_TEXT)
    CANARY.chmod(0o644)
    listener = _Listener()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", SECRET)
        mp.setenv("FLOWSTEER_ADVERSARIAL_SECRET", SECRET)
        limits = SandboxLimits(timeout_s=TIMEOUT, memory_mb=256, max_processes=24)
        boxes = {"process": Sandbox(limits, mode="process"),
                 "exec": Sandbox(limits, mode="process", launcher="exec")}
        if shutil.which("bwrap"):
            with contextlib.suppress(UserError):
                bwrap = Sandbox(limits, mode="bwrap")
                if bwrap.mode_in_effect == "bwrap":
                    boxes["bwrap"] = bwrap
        yield {"boxes": boxes, "box": boxes["process"], "listener": listener}
        for box in boxes.values():
            box.close()
    listener.stop.set()
    for path in CANARY_DIR.iterdir():
        path.unlink()
    CANARY_DIR.rmdir()


def _strength(box: Sandbox) -> dict[str, bool]:
    features = box.features
    strong = (features.own_uid and box.limits.isolate_user) or features.mode == "bwrap"
    return {"fs": strong, "kill": strong or bool(features.namespaces & CLONE_NEWPID)}


def _processes_with(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(name))
    return found


def _canary_digest() -> tuple[str, int]:
    return hashlib.sha256(CANARY.read_bytes()).hexdigest(), CANARY.stat().st_mode


# Under bubblewrap every attack except the plain CPU burners (nothing mode-specific to learn there).
# "process" runs fork from the fork server where it works here; "exec" starts each run's python.
CASES = ([("process", a) for a in ATTACKS] + [("exec", a) for a in ATTACKS]
         + [("bwrap", a) for a in ATTACKS if a.statuses != TIMEOUT_ONLY])


@pytest.mark.parametrize(("mode", "attack"), CASES, ids=[f"{m}-{a.name}" for m, a in CASES])
def test_attack_is_contained(mode: str, attack: Attack, env) -> None:
    if mode not in env["boxes"]:
        pytest.skip("bubblewrap is not installed or not usable here")
    box: Sandbox = env["boxes"][mode]
    if attack.needs and not _strength(box)[attack.needs]:
        pytest.skip(f"'{attack.needs}' attacks need root (uid isolation) or bwrap; this machine has neither")
    token = f"{int(time.time()) % 1000}.{uuid.uuid4().int % 10**9:09d}"  # also a valid sleep duration
    values = {"@TOKEN@": token, "@PYTEST_PID@": str(os.getpid()), "@PORT@": str(env["listener"].port)}

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    code = fill(attack.code)
    before = _canary_digest()

    start = time.monotonic()
    result = box.run(code, stdin=attack.stdin)
    elapsed = time.monotonic() - start

    assert isinstance(result, SandboxResult)
    assert result.status in attack.statuses, (result, result.stderr[-800:])
    assert elapsed < TIMEOUT + 2.0
    if attack.check is not None:
        assert attack.check(result, env) is not False, result
    assert os.getppid() > 0 and threading.main_thread().is_alive() and env["listener"].thread.is_alive()
    assert box.running_processes() == []
    assert _processes_with(token) == []
    assert _canary_digest() == before and CANARY.read_text() == CANARY_TEXT
    for path in attack.forbidden_paths:
        assert not os.path.exists(fill(path)), path


def test_there_are_enough_attacks() -> None:
    assert len(ATTACKS) >= 30 and len({a.name for a in ATTACKS}) == len(ATTACKS)


def test_sandbox_still_works_after_the_attacks(env) -> None:
    for box in env["boxes"].values():
        assert box.run("print('alive')").stdout == "alive\n"
