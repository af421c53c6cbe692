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
  the run's marker environment variable, rlimits (RLIMIT_NPROC as a per-run cap even without a uid
  of its own), ``no_new_privs``, a scrubbed environment, a temporary working directory removed
  afterwards, a supervisor between the library and the program.

Each interpreter runs exactly one program. :func:`spawn` starts it; it waits, already initialised,
until :func:`run` sends the sources through a pipe (so a :class:`~flowsteer.sandbox.Sandbox` can keep
a spare started ahead of need).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import itertools
import logging
import marshal
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import IO, Literal

from flowsteer.sandbox._cleanup import MARKER_VAR, cleanup, killpg, reap, remove_tree
from flowsteer.sandbox._forkserver import Forked, server_for
from flowsteer.sandbox._result import Outcome
from flowsteer.sandbox._types import SandboxLimits
from flowsteer.sandbox._verdict import ENCODER_SOURCE

__all__ = ["Features", "RunHandle", "Spawned", "spawn", "run", "execute"]

logger = logging.getLogger(__name__)

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID

_STUB = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv.pop(1))))"
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_UID_BASE = 420_000
_uid_counter = itertools.count()


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
    launcher: Literal["exec", "forkserver"] = "exec"
    """How a run's interpreter starts: ``exec`` (a fresh ``python -I``) or ``forkserver`` (forked
    from a clean pre-started interpreter, :mod:`._forkserver`; process mode only)."""

    @property
    def backend(self) -> str:
        """What runs the programs, as results report it: ``bwrap``, ``process`` or ``process+forkserver``."""
        return "process+forkserver" if self.mode == "process" and self.launcher == "forkserver" else self.mode


@dataclass
class RunHandle:
    """Lets another thread (an async caller being cancelled) kill a run early."""

    cancelled: bool = False
    _proc: subprocess.Popen | Forked | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, proc: subprocess.Popen | Forked) -> None:
        with self._lock:
            self._proc = proc
            if self.cancelled:
                killpg(proc.pid)

    def cancel(self) -> None:
        """Kill the run's process group now; the run then finishes as ``killed``."""
        with self._lock:
            self.cancelled = True
            if self._proc is not None:
                killpg(self._proc.pid)


def _next_uid() -> int:
    """A uid no other live run uses: 256 per library process, keyed by its pid (pids of live
    processes are unique and below 2**22, so the range stays under 2**30 + base)."""
    return _UID_BASE + os.getpid() * 256 + next(_uid_counter) % 256


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
        *[arg for path in world_writable() if path not in ("/tmp", "/var/tmp", "/dev/shm")
          for arg in ("--tmpfs", path)],
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
        with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError):
            record = ast.literal_eval(line.decode("utf-8", errors="replace"))
            if isinstance(record, dict):
                events.append(record)
    return events


@functools.cache
def _bootstrap_code() -> str:
    """The bootstrap, compiled once here and marshalled (hex) for the child's command line.

    Compiling it costs a child ~5-20 ms of CPU per start. marshal's format is private to a Python
    version, which is fine: the child runs this very interpreter.
    """
    source = resources.files("flowsteer.sandbox").joinpath("_bootstrap.py").read_text(encoding="utf-8")
    return marshal.dumps(compile(source, "<flowsteer-sandbox-bootstrap>", "exec")).hex()


@functools.cache
def _site_packages() -> list[str]:
    """The interpreter's site-packages directories (virtual environment included), no user site."""
    import site

    return [path for path in site.getsitepackages() if os.path.isdir(path)]


@functools.cache
def world_writable() -> tuple[str, ...]:
    """Directories anyone may write on this host (``/tmp``, ``/var/tmp``, ``/dev/shm``,
    ``/run/lock``, ...), found once: each becomes a private directory of the run's tmpfs."""
    found: list[str] = []
    skip = ("/proc", "/sys")

    def walk(path: str, depth: int) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False) or entry.path in skip:
                    continue
                if entry.stat(follow_symlinks=False).st_mode & 0o002:
                    found.append(entry.path)
                    continue  # what lies inside is covered with it
                if depth < 3:
                    walk(entry.path, depth + 1)
            except OSError:
                continue

    walk("/", 1)
    return tuple(sorted(found))


def _interpreter() -> list[str]:
    """``python -I -S -c <stub> <bootstrap>``; the configuration literal comes last."""
    return [sys.executable, "-I", "-S", "-c", _STUB, _bootstrap_code()]


def _command(
    limits: SandboxLimits, features: Features, uid: int | None, workdir: str, fds: dict[str, int], spare: bool
) -> list[str]:
    """``python -I -S -c <bootstrap> <config>``, wrapped for bubblewrap and the uid drop as needed."""
    bwrap = features.bwrap if features.mode == "bwrap" else None
    config = _run_config(limits, features, uid, fds, spare)
    # -S: ``site`` would process every .pth file (an editable install's finder alone costs ~35 ms
    # per start); the bootstrap adds the site-packages directories to sys.path itself instead.
    command = [*_interpreter(), repr(config)]
    if bwrap:
        command = _bwrap_prefix(bwrap, workdir) + command
    if uid is None:
        return command
    # Root: a first bootstrap stage drops to the run's uid (making the interpreter reachable in a
    # private mount namespace), then goes on in the same process or execs bubblewrap.
    stage = dict(config, drop=uid, exec=command if bwrap else None)
    return [*_interpreter(), repr(stage)]


def _run_config(
    limits: SandboxLimits, features: Features, uid: int | None, fds: dict[str, int], spare: bool
) -> dict:
    """The bootstrap's configuration literal for one run (see ``_bootstrap.main``)."""
    bwrap = features.mode == "bwrap"
    namespaces = 0 if bwrap else features.namespaces
    if not limits.block_network:
        namespaces &= ~CLONE_NEWNET
    return {
        "drop": None,
        "exec": None,
        "unshare": namespaces,
        "guard_network": limits.block_network and not bwrap,  # bwrap has no network at all
        "nproc": limits.max_processes,
        "own_uid": uid is not None,
        "supervise": uid is None,
        "path": _site_packages(),
        "preload": limits.preload if spare else (),
        "private_fs": world_writable() if namespaces & CLONE_NEWNS and namespaces & CLONE_NEWUSER else (),
        "disk_mb": limits.disk_mb,
        **fds,
    }


@dataclass
class Spawned:
    """A started sandbox interpreter waiting for its one program (used once, then gone)."""

    proc: subprocess.Popen | Forked
    workdir: str
    uid: int | None
    run_id: str
    files: list[IO[bytes]]
    """stdout, stderr and status files the child writes."""
    control: int
    """Write end of the pipe the program is sent through."""
    bwrap: bool = False
    """Runs under bubblewrap."""
    owner: int = field(default_factory=os.getpid)

    def usable(self) -> bool:
        """Still waiting, and started by this process (not inherited across a fork)."""
        return self.owner == os.getpid() and self.proc.poll() is None

    def discard(self) -> None:
        """Kill it and remove everything it had."""
        with contextlib.suppress(OSError):
            os.close(self.control)
        killpg(self.proc.pid)
        with contextlib.suppress(OSError):
            self.proc.wait()
        reap(self.uid, self.run_id)
        _finish(self)


def spawn(limits: SandboxLimits, features: Features, run_id: str, *, spare: bool = False) -> Spawned:
    """Start an interpreter for one program; it waits until :func:`run` sends one.

    A ``spare`` (started ahead of need) also imports ``limits.preload`` while it waits.
    """
    uid = _next_uid() if features.own_uid and limits.isolate_user else None
    workdir = tempfile.mkdtemp(prefix="flowsteer-sbx-")
    files: list[IO[bytes]] = []
    control_read = control_write = -1
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        files = [tempfile.TemporaryFile() for _ in range(3)]
        control_read, control_write = os.pipe()
        fds = {"status_fd": files[2].fileno(), "control_fd": control_read}
        proc: subprocess.Popen | Forked
        if features.launcher == "forkserver" and features.mode == "process":
            proc = _fork(limits, features, uid, workdir, run_id, files, control_read)
        else:
            proc = subprocess.Popen(
                _command(limits, features, uid, workdir, fds, spare), cwd=workdir,
                env=_environment(workdir, run_id), stdin=subprocess.DEVNULL, stdout=files[0], stderr=files[1],
                pass_fds=tuple(fds.values()), start_new_session=True, close_fds=True,
            )  # fmt: skip
    except BaseException:
        for fd in (control_read, control_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        for handle in files:
            handle.close()
        remove_tree(workdir)
        raise
    os.close(control_read)
    return Spawned(proc, workdir, uid, run_id, files, control_write, bwrap=features.mode == "bwrap")


def _fork(limits: SandboxLimits, features: Features, uid: int | None, workdir: str, run_id: str,
          files: list[IO[bytes]], control_read: int) -> Forked:
    """Fork the run's interpreter from this process's fork server (started on first use)."""
    base = _run_config(limits, features, uid, {"status_fd": -1, "control_fd": -1}, spare=False)
    config = dict(base, drop=uid, exec=None, preload=())  # the server imported ``preload`` already
    run = {"run_id": run_id, "workdir": workdir, "env": _environment(workdir, run_id), "config": config}
    fds = [files[0].fileno(), files[1].fileno(), files[2].fileno(), control_read]
    key, server_config = (sys.executable, limits.preload), {"path": base["path"], "preload": limits.preload}
    try:
        return server_for(key, _interpreter(), server_config, _environment("/", "")).fork(run, fds)
    except OSError as exc:  # a server that died or stopped answering is replaced once
        logger.warning("sandbox run %s: %s; starting a new fork server", run_id, exc)
    return server_for(key, _interpreter(), server_config, _environment("/", "")).fork(run, fds)


def run(
    spawned: Spawned,
    sources: list[tuple[str, str]],
    *,
    limits: SandboxLimits,
    timeout_s: float,
    stdin: str | None = None,
    handle: RunHandle | None = None,
    probes: tuple[str, ...] = (),
) -> Outcome:
    """Send ``sources`` (run in order, in one namespace) to ``spawned``; wait, kill, clean up.

    ``probes``: expressions evaluated after the sources, each value reported as plain data on the
    status channel (host verdicts, :mod:`flowsteer.sandbox._verdict`)."""
    try:
        request: dict = {"sources": sources, "stdin": stdin, "rlimits": _rlimits(limits, timeout_s)}
        if probes:
            request.update(probes=list(probes), encoder=ENCODER_SOURCE)
        _send(spawned.control, repr(request).encode("utf-8"))
        if handle is not None:
            handle.attach(spawned.proc)
        try:
            timed_out = not _wait_for_exit(spawned.proc, timeout_s)
        finally:
            killpg(spawned.proc.pid)
            returncode = spawned.proc.wait()
        out, err, status = spawned.files
        events = _read_events(status)
        # With a PID namespace the kernel killed the program's whole tree before its init (and so
        # the supervisor we waited for) could exit: only an interrupted run needs the reaper.
        # (bubblewrap's outer process exits as soon as the program does, while its namespace may
        # still be dying: bwrap runs always go through the reaper.)
        pid_namespace = not spawned.bwrap and any(
            e.get("event") == "start" and e.get("namespaces", 0) & CLONE_NEWPID for e in events
        )
        # A supervisor that died by a signal (the program can kill its own process group) did not
        # wait for the namespace to empty: reap then too.
        interrupted = timed_out or returncode < 0 or (handle is not None and handle.cancelled)
        if interrupted or not pid_namespace:
            reap(spawned.uid, spawned.run_id)
        stdout, cut_out = _read_capped(out, limits.max_output_bytes)
        stderr, cut_err = _read_capped(err, limits.max_output_bytes)
        return Outcome(returncode, timed_out, events, stdout, stderr, cut_out or cut_err)
    finally:
        _finish(spawned)


def execute(
    sources: list[tuple[str, str]],
    *,
    limits: SandboxLimits,
    features: Features,
    timeout_s: float,
    run_id: str,
    stdin: str | None = None,
) -> Outcome:
    """Spawn an interpreter and run ``sources`` in it (no spare)."""
    return run(spawn(limits, features, run_id), sources, limits=limits, timeout_s=timeout_s, stdin=stdin)


def _send(fd: int, data: bytes) -> None:
    # The child reads until end-of-file; a child that died early makes this a broken pipe, which
    # the wait below turns into a structured result.
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _finish(spawned: Spawned) -> None:
    for handle in spawned.files:
        handle.close()
    cleanup(spawned.workdir, spawned.uid)


def _wait_for_exit(proc: subprocess.Popen | Forked, timeout_s: float) -> bool:
    """Wait until ``proc`` exits or ``timeout_s`` passes; True when it exited.

    ``Popen.wait(timeout)`` polls with sleeps growing to 50 ms, which adds tens of milliseconds to
    every short run; a pidfd wakes us the moment the process exits. A forked run is waited for
    through its server's exit report (it is the server's child, not ours).
    """
    if isinstance(proc, Forked):
        try:
            proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or already reaped
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return proc.poll() is not None
            with contextlib.suppress(InterruptedError):
                if poller.poll(remaining * 1000):
                    return True
    finally:
        os.close(pidfd)
