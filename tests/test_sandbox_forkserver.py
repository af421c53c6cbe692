"""The fork server launcher and the backend choice: fresh state per run, no way back to the server,
a dead server costs one run, results name their backend, auto picks by isolation and then cost."""

from __future__ import annotations

import contextlib
import gc
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


def _spare_ready(box: Sandbox, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with box._spares_cond:
            if box._spares:
                return list(box._spares)
        time.sleep(0.05)
    raise AssertionError("no spare interpreter was started")


def test_a_sandbox_collected_in_the_servers_reply_thread_does_not_stall_later_runs():
    # The collector runs a dead sandbox's finalizer in whichever thread allocates: once that was the
    # fork server's reply reader, whose discard then waited for an exit report only that thread
    # delivers, and every later run of the process hung (a CI run timed out this way).
    doomed = _forked_box(prewarm=1)
    assert doomed.run("pass").ok
    spares = _spare_ready(doomed)
    finalizer = doomed._finalizer
    fired = []

    def collect_in_reader(phase, info):
        if phase == "start" and finalizer.alive and threading.current_thread().name == "flowsteer-sandbox-forkserver":
            fired.append(threading.current_thread().name)
            finalizer()  # what collecting ``doomed`` from a garbage cycle does in this thread

    box = _forked_box(prewarm=0)
    threshold = gc.get_threshold()
    gc.callbacks.append(collect_in_reader)
    gc.set_threshold(1)  # collect at (nearly) every allocation, the reader's included
    results = []
    try:
        runner = threading.Thread(target=lambda: results.extend(box.run(f"print({i})") for i in range(20)))
        runner.start()
        runner.join(timeout=60)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(collect_in_reader)
    assert fired, "the reader thread never collected: the scenario was not exercised"
    assert not runner.is_alive(), "runs hung after a finalizer ran in the fork server's reply thread"
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(20)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(s.workdir) for s in spares):
        time.sleep(0.05)
    assert not any(os.path.exists(s.workdir) for s in spares), "the collected sandbox's spares were not discarded"


def test_waiting_for_a_forked_run_from_its_reply_thread_is_refused():
    forked = _forkserver.Forked(1, _reader=threading.current_thread())
    with pytest.raises(RuntimeError, match="deadlock"):
        forked.wait(0.1)
    forked._finish(0)
    assert forked.wait() == 0  # finished: nothing to wait for, from any thread


def test_a_fork_server_that_does_not_answer_is_replaced_within_the_run(monkeypatch):
    box = _forked_box(prewarm=0)
    assert box.run("pass").ok
    monkeypatch.setattr(_forkserver, "FORK_REPLY_S", 0.5)
    stuck = [s for s in _forkserver._servers.values() if s.usable()]
    assert stuck
    for server in stuck:
        os.kill(server.proc.pid, signal.SIGSTOP)  # alive, holding its line, never answering
    try:
        started = time.monotonic()
        served = box.run("print('served')")  # by a new server, after half a second on the stuck one
        assert time.monotonic() - started < 10
    finally:
        for server in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.proc.pid, signal.SIGCONT)
    assert served.ok and served.stdout == "served\n" and served.backend == "process+forkserver", served
    assert all(not s.usable() for s in stuck) and stuck[0] not in _forkserver._servers.values()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(s.proc.poll() is None for s in stuck):
        time.sleep(0.05)
    assert all(s.proc.poll() is not None for s in stuck), "the stuck server was left running"


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
