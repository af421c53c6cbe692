"""The fork server launcher and the backend choice: fresh state per run, no way back to the server,
a dead server costs one run, results name their backend, auto picks by isolation and then cost."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from flowsteer.errors import UserError
from flowsteer.sandbox import Sandbox, SandboxLimits, _forkserver
from flowsteer.sandbox._probe import choose_backend, same_isolation
from flowsteer.sandbox._process import NAMESPACES, Features


def _forked_box(**kwargs) -> Sandbox:
    box = Sandbox(SandboxLimits(timeout_s=5.0), mode="process", **kwargs)
    if box.features.launcher != "forkserver":
        pytest.skip("the fork server needs a uid of its own (root) or a PID namespace here")
    return box


def test_results_name_the_backend_and_exec_stays_available():
    box = _forked_box()
    assert box.backend == "process+forkserver"
    assert box.run("print(1)").backend == "process+forkserver"
    assert box.check("def f():\n    return 2", "assert f() == 2").backend == "process+forkserver"
    plain = Sandbox(SandboxLimits(timeout_s=5.0), mode="process", launcher="exec")
    result = plain.run("print(1)")
    assert result.ok and result.backend == "process" and plain.backend == "process"


def test_every_forked_run_starts_from_the_clean_server_state():
    box = _forked_box(prewarm=0)
    first = box.run("import math, sys\nmath.leak = 1\nsys.modules['planted'] = math\nprint(id(sys))")
    second = box.run("import math, sys\nprint(hasattr(math, 'leak'), 'planted' in sys.modules)")
    assert first.ok and second.stdout == "False False\n", (first, second)


def test_a_forked_program_holds_no_line_to_the_server():
    box = _forked_box()
    code = (
        "import os\n"
        "links = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')"
        " if os.path.exists(f'/proc/self/fd/{fd}')]\n"
        "print(sum('socket:' in link for link in links))\n"
        "print(open('/proc/self/environ', 'rb').read().count(b'.' * 16))"
    )
    result = box.run(code)
    assert result.ok, result.stderr
    sockets, dots = result.stdout.split()
    assert sockets == "0"  # the server's socket (and its wake-up pipe) were closed before the program
    assert dots == "0"  # /proc/<pid>/environ shows the run id, not the server's placeholder


def test_a_forked_run_carries_the_run_marker_for_the_reaper():
    box = _forked_box(prewarm=0)
    seen: list[list[int]] = []

    def watch() -> None:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not seen:
            found = box.running_processes()
            if found:
                seen.append(found)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert box.run("import time\ntime.sleep(1.0)").ok
    watcher.join()
    assert seen, "the running program should carry FLOWSTEER_SANDBOX=<its run id>"
    assert box.running_processes() == []


def test_a_dead_fork_server_costs_one_run_and_is_restarted():
    box = _forked_box(prewarm=0)
    assert box.run("pass").ok
    results = []
    runner = threading.Thread(target=lambda: results.append(box.run("import time\ntime.sleep(4)")))
    runner.start()
    time.sleep(0.5)
    servers = [s for s in _forkserver._servers.values() if s.usable()]
    assert servers
    for server in servers:
        os.kill(server.proc.pid, signal.SIGKILL)
    runner.join(timeout=10)
    assert not runner.is_alive(), "the run must not hang when its server dies"
    assert results and not results[0].ok and results[0].status in ("killed", "error"), results
    after = box.run("print('again')")
    assert after.ok and after.stdout == "again\n" and after.backend == "process+forkserver"


def test_launcher_and_mode_settings_are_checked(monkeypatch):
    with pytest.raises(UserError, match="launcher"):
        Sandbox(launcher="thread")  # type: ignore[arg-type]
    monkeypatch.setenv("FLOWSTEER_SANDBOX_MODE", "docker")
    with pytest.raises(UserError, match="FLOWSTEER_SANDBOX_MODE"):
        Sandbox()
    monkeypatch.setenv("FLOWSTEER_SANDBOX_MODE", "process")
    assert Sandbox().mode == "process"
    assert Sandbox(mode="auto").mode == "auto"  # an explicit argument wins over the variable


def test_auto_takes_bwrap_unless_process_mode_isolates_the_same_and_costs_less():
    bwrap = Features("bwrap", bwrap="/usr/bin/bwrap", own_uid=True)
    strong = Features("process", own_uid=True, namespaces=NAMESPACES, launcher="forkserver")
    weak_uid = Features("process", own_uid=False, namespaces=NAMESPACES, launcher="forkserver")
    no_net = Features("process", own_uid=True, namespaces=NAMESPACES & ~0x40000000)
    assert same_isolation(strong, bwrap)
    assert not same_isolation(weak_uid, bwrap) and not same_isolation(no_net, bwrap)
    assert choose_backend(strong, bwrap, 0.004, 0.020) is strong  # measured cheaper, same isolation
    assert choose_backend(strong, bwrap, 0.030, 0.020) is bwrap
    assert choose_backend(weak_uid, bwrap, 0.001, 0.020) is bwrap  # cheaper but weaker: never
    assert choose_backend(no_net, bwrap, 0.001, 0.020) is bwrap


def test_code_scores_say_which_backend_judged_them():
    from flowsteer.scoring import score
    from flowsteer.tasks import Task

    box = Sandbox(SandboxLimits(timeout_s=5.0))
    task = Task("Write add(a, b).", kind="code", entry_point="add", hidden_tests="assert add(2, 3) == 5")
    good = score(task, "def add(a, b):\n    return a + b", sandbox=box)
    assert good.value == 1.0 and good.details["sandbox"] == box.backend and good.details["verdict"] == "host"
    bad = score(task, "def add(a, b):\n    return 0", sandbox=box)
    assert bad.value == 0.0 and bad.details["sandbox"] == box.backend
