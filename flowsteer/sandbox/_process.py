"""Launching, limiting, killing and cleaning up after one sandboxed program.

Layers, from the strongest available down (the probe in :mod:`._probe` decides which hold here):

* ``bwrap`` mode: bubblewrap gives the program a read-only view of ``/``, private ``/tmp``,
  ``/proc``, network, PID, IPC and UTS namespaces, and kills the tree when it exits.
* own uid: when the library runs as root, each run gets a fresh, unused uid. The program then cannot
  read root's files (``/etc/shadow``, ``/proc/<pid>/environ`` of the library), write the repository,
  signal the library, and RLIMIT_NPROC bites per run. After the run, ``kill(-1, SIGKILL)`` sent *as
  that uid* removes every process it left behind, double-forked daemons included, in one pass.
* namespaces from the bootstrap: an unprivileged user namespace holding a network namespace (no
  network) and a PID namespace (the kernel kills the whole tree when the program exits).
* always: a new session and process group killed with ``killpg`` on timeout, a scan of ``/proc`` for
  the run's marker environment variable, rlimits, a scrubbed environment, a temporary working
  directory removed afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import IO, Literal

from flowsteer.sandbox._types import SandboxLimits, SandboxResult, parse_error_line

__all__ = ["Features", "RunHandle", "execute", "MARKER_VAR"]

logger = logging.getLogger(__name__)

MARKER_VAR = "FLOWSTEER_SANDBOX"
"""Environment variable carrying the run id; the reaper finds leftover processes by it."""

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID

_BOOTSTRAP = resources.files("flowsteer.sandbox").joinpath("_bootstrap.py").read_text(encoding="utf-8")
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
_UID_BASE = 420_000
_uid_counter = itertools.count()
_SIGNAL_MEANING = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded (output or a file too large)",
    signal.SIGKILL: "killed (CPU hard limit, memory or an explicit kill)",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
}


@dataclass(frozen=True)
class Features:
    """What isolation works on this machine (found once by the probe)."""

    mode: Literal["bwrap", "process"]
    bwrap: str | None = None
    """Path of the bwrap binary in ``bwrap`` mode."""
    own_uid: bool = False
    """Run each program under a fresh uid (the library runs as root)."""
    namespaces: int = 0
    """``unshare`` flags the bootstrap applies (process mode only)."""


@dataclass
class RunHandle:
    """Lets another thread (an async caller being cancelled) kill a run early."""

    cancelled: bool = False
    _proc: subprocess.Popen | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._proc = proc
            if self.cancelled:
                _killpg(proc.pid)

    def cancel(self) -> None:
        """Kill the run's process group now; the run then finishes as ``killed``."""
        with self._lock:
            self.cancelled = True
            if self._proc is not None:
                _killpg(self._proc.pid)


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    timed_out: bool
    events: list[dict]
    stdout: bytes
    stderr: bytes
    truncated: bool


def _next_uid() -> int:
    # Unique within this process; spread by pid across processes on the same machine.
    return _UID_BASE + (os.getpid() % 4096) * 4096 + next(_uid_counter) % 4096


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _rlimits(limits: SandboxLimits, timeout_s: float) -> dict[str, tuple[int, int]]:
    cpu = limits.cpu_seconds(timeout_s)
    memory = limits.memory_mb * 1024 * 1024
    fsize = limits.file_size_mb * 1024 * 1024
    return {
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_AS": (memory, memory),
        "RLIMIT_FSIZE": (fsize, fsize),
        "RLIMIT_CORE": (0, 0),
    }


def _environment(workdir: str, run_id: str) -> dict[str, str]:
    # An allow-list, never a copy of os.environ: no API keys or tokens reach the program.
    return {
        "PATH": _SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",  # documentation only: ``-I`` ignores PYTHON* variables
        MARKER_VAR: run_id,
    }


def _bwrap_prefix(bwrap: str, workdir: str) -> list[str]:
    return [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/dev/shm",
        "--bind", workdir, workdir, "--chdir", workdir, "--",
    ]  # fmt: skip


def _read_capped(handle: IO[bytes], cap: int) -> tuple[bytes, bool]:
    handle.flush()
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    return handle.read(cap), size > cap


def _read_events(handle: IO[bytes]) -> list[dict]:
    handle.seek(0)
    events = []
    for line in handle.read(65_536).splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                events.append(record)
    return events


def execute(
    sources: list[tuple[str, str]],
    *,
    limits: SandboxLimits,
    features: Features,
    timeout_s: float,
    stdin: str | None = None,
    run_id: str,
    handle: RunHandle | None = None,
) -> tuple[_Outcome, float]:
    """Run ``sources`` (``(filename, text)`` pairs, executed in order in one namespace)."""
    start = time.perf_counter()
    uid = _next_uid() if features.own_uid and limits.isolate_user else None
    workdir = tempfile.mkdtemp(prefix="flowsteer-sbx-")
    try:
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(3)]
            outcome = _launch(sources, limits, features, timeout_s, stdin, run_id, handle, uid, workdir, files)
    finally:
        _cleanup(workdir, uid, run_id)
    return outcome, time.perf_counter() - start


def _command(paths, limits, features, timeout_s, uid, workdir, status_fd) -> list[str]:
    """``python -I -c <bootstrap> <config>``, wrapped for bubblewrap and the uid drop as needed."""
    bwrap = features.bwrap if features.mode == "bwrap" else None
    namespaces = 0 if bwrap else features.namespaces
    if not limits.block_network:
        namespaces &= ~CLONE_NEWNET
    config = {
        "unshare": namespaces,
        "guard_network": limits.block_network and not bwrap,  # bwrap has no network at all
        "status_fd": status_fd,
        "sources": paths,
        "rlimits": _rlimits(limits, timeout_s),
        "nproc": limits.max_processes,
        "own_uid": uid is not None,
        "supervise": uid is None,
    }
    command = [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(config)]
    if bwrap:
        command = _bwrap_prefix(bwrap, workdir) + command
    if uid is None:
        return command
    # Root: a first bootstrap stage drops to the run's uid (making the interpreter reachable in a
    # private mount namespace), then goes on in the same process or execs bubblewrap.
    stage = dict(config, drop=uid, exec=command if bwrap else None)
    return [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(stage)]


def _launch(sources, limits, features, timeout_s, stdin, run_id, handle, uid, workdir, files) -> _Outcome:
    out, err, status = files
    paths = []
    for name, text in sources:
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        paths.append(path)
    if uid is not None:
        os.chown(workdir, uid, uid)
    command = _command(paths, limits, features, timeout_s, uid, workdir, status.fileno())
    with contextlib.ExitStack() as stack:
        stdin_file: int | IO[bytes] = subprocess.DEVNULL
        if stdin is not None:
            stdin_file = stack.enter_context(tempfile.TemporaryFile())
            stdin_file.write(stdin.encode("utf-8"))
            stdin_file.seek(0)
        proc = subprocess.Popen(
            command, cwd=workdir, env=_environment(workdir, run_id), stdin=stdin_file, stdout=out,
            stderr=err, pass_fds=(status.fileno(),), start_new_session=True, close_fds=True,
        )  # fmt: skip
    if handle is not None:
        handle.attach(proc)
    timed_out = False
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _killpg(proc.pid)
        returncode = proc.wait()
        _reap(uid, run_id)
    cap = limits.max_output_bytes
    stdout, cut_out = _read_capped(out, cap)
    stderr, cut_err = _read_capped(err, cap)
    return _Outcome(returncode, timed_out, _read_events(status), stdout, stderr, cut_out or cut_err)


def _reap(uid: int | None, run_id: str) -> None:
    """Kill every process the run left behind (daemons that left the process group)."""
    if uid is not None:
        # kill(-1) as the run's uid reaches exactly that uid's processes, atomically w.r.t. fork.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["/bin/sh", "-c", "kill -9 -1"], user=uid, group=uid, extra_groups=[], env={},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5,
            )  # fmt: skip
    for _ in range(50):
        pids = marked_processes(run_id)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    logger.warning("sandbox run %s: processes still alive after cleanup", run_id)


def marked_processes(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``FLOWSTEER_SANDBOX=<marker>`` or
    ``FLOWSTEER_SANDBOX=<marker>-...`` (zombies excluded)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[-1].split()[0]
        except OSError:
            continue
        entries = environ.split(b"\0")
        if state != b"Z" and any(e == needle or e.startswith(needle + b"-") for e in entries):
            found.append(int(name))
    return found


def _cleanup(workdir: str, uid: int | None, run_id: str) -> None:
    _remove_tree(workdir)
    if uid is None:
        return
    # Files the run's uid dropped in world-writable places belong to nobody else: remove them.
    for place in _WORLD_WRITABLE:
        with contextlib.suppress(OSError):
            for entry in os.scandir(place):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == uid:
                        _remove_tree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)


def _remove_tree(path: str) -> None:
    def make_writable(func, target, _exc):  # the program may have chmod-ed its files read-only
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)

    shutil.rmtree(path, onexc=make_writable) if sys.version_info >= (3, 12) else shutil.rmtree(
        path, onerror=make_writable
    )


def _shell_signal(rc: int, events: dict[str, dict]) -> int:
    """Signal number encoded as ``128 + n`` by bubblewrap or the namespace init, else 0."""
    if rc > 128 and rc - 128 in signal.Signals._value2member_map_ and not events.keys() & {"exit", "error"}:
        return rc - 128
    return 0


def build_result(outcome: _Outcome, seconds: float, timeout_s: float, require_completion: bool) -> SandboxResult:
    """Turn what happened into a :class:`SandboxResult`."""
    stdout = outcome.stdout.decode("utf-8", errors="replace")
    stderr = outcome.stderr.decode("utf-8", errors="replace")
    rc = outcome.returncode

    def result(status, error_type=None, message=None, exit_code=rc):
        return SandboxResult(status, stdout, stderr, exit_code, error_type, message, seconds, outcome.truncated)

    if outcome.timed_out:
        return result("timeout", "Timeout", f"exceeded the {timeout_s:g} s wall-clock limit", exit_code=None)
    events = {e.get("event"): e for e in outcome.events}
    signum = -rc if rc < 0 else _shell_signal(rc, events)
    if signum:
        sig = signal.Signals(signum) if signum in signal.Signals._value2member_map_ else None
        name = sig.name if sig else f"signal {signum}"
        return result("killed", name, _SIGNAL_MEANING.get(sig, f"terminated by {name}"), exit_code=-signum)
    if "error" in events and rc != 0:
        return result("error", str(events["error"].get("type")), events["error"].get("message") or None)
    if rc != 0:
        if "exit" in events:
            return result("error", "SystemExit", f"exit code {rc}")
        parsed = parse_error_line(stderr)
        if parsed:
            return result("error", parsed[0], parsed[1])
        return result("error", "ExitCode", f"exited with code {rc}")
    if require_completion and "done" not in events:
        return result("error", "EarlyExit", "the program exited before the tests finished")
    return result("ok")
