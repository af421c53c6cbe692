"""The fork server: one clean interpreter per library process that forks each run's interpreter.

Starting ``python -I -S`` and importing what a run needs (``ctypes`` for the namespaces, the
``preload`` modules generated code imports) costs ~25 ms of CPU per run, which bounds throughput
when many checks run at once. The server pays it once: it starts with the same bootstrap, imports
everything, and then only forks. It never runs untrusted code itself; each forked child closes its
line to the server, marks itself with the run id, and goes through exactly the steps of an exec'd
run (own uid, namespaces, private filesystem, limits, supervisor) before its one program. A child
is used for one program and then gone, as an exec'd interpreter is.

Used in process mode when the run's leftovers are reaped without the environment marker (a uid of
its own, or a PID namespace), chosen by the probe (:mod:`._probe`) and ``Sandbox(launcher=...)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowsteer.sandbox._cleanup import MARKER_VAR, killpg

__all__ = ["Forked", "ForkServer", "server_for", "MARKER_PLACEHOLDER"]

logger = logging.getLogger(__name__)

FORK_REPLY_S = 30.0
"""How long a fork request waits for the server's answer (a fork takes milliseconds)."""

MARKER_PLACEHOLDER = "." * 64
"""The server's marker value; each child overwrites it in place with its run id (same length)."""


@dataclass
class Forked:
    """A run's interpreter forked by the server: what the runner needs of ``subprocess.Popen``."""

    pid: int
    returncode: int | None = None
    _reader: threading.Thread | None = None
    """The thread that delivers the exit status: it must never wait itself."""
    _done: threading.Event = field(default_factory=threading.Event)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.is_set() and threading.current_thread() is self._reader:
            raise RuntimeError(
                f"forked sandbox {self.pid} waited for from the thread that reports its exit (a deadlock)"
            )
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked sandbox {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def _finish(self, code: int) -> None:
        self.returncode = code
        self._done.set()


class ForkServer:
    """The server process and the thread that reads its replies (fork results, exit statuses)."""

    def __init__(self, command: Sequence[str], config: dict, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._errors = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [*command, repr(dict(config, forkserver=True, socket_fd=theirs.fileno()))],
                cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._errors,
                pass_fds=(theirs.fileno(),), start_new_session=True, close_fds=True,
            )  # fmt: skip
        except BaseException:
            ours.close()
            self._errors.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._owner = os.getpid()
        self._lock = threading.Lock()  # one request in flight: replies come back in order
        self._children: dict[int, Forked] = {}
        self._replies: list[Forked | str] = []
        self._reply = threading.Condition()
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="flowsteer-sandbox-forkserver", daemon=True)
        self._reader.start()

    def usable(self) -> bool:
        return self._alive and self._owner == os.getpid()

    def fork(self, run: dict, fds: Sequence[int]) -> Forked:
        """Fork one run's interpreter; ``fds`` (stdout, stderr, status, control) are passed to it."""
        with self._lock:
            if not self.usable():
                raise OSError("the sandbox fork server is not running")
            socket.send_fds(self._sock, [repr(run).encode("utf-8")], list(fds))
            with self._reply:  # _stopped() notifies too: a dead server wakes the wait at once
                self._reply.wait_for(lambda: self._replies or not self._alive, timeout=FORK_REPLY_S)
                reply = self._replies.pop(0) if self._replies else None
            if reply is None and self._alive:
                self._alive = False  # a server that does not answer is never asked again
                self.close()
                raise OSError(f"the sandbox fork server did not answer in {FORK_REPLY_S:g} s")
            if reply is None:
                raise OSError(f"the sandbox fork server stopped: {self._stderr()}")
        if isinstance(reply, str):
            raise OSError(f"the sandbox fork server could not fork: {reply}")
        return reply

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(4096)
                if not data:
                    break
                # "kind pid detail" as plain text: no ``ast`` in this thread (CPython 3.11's AST
                # recursion guard is not thread-safe: a concurrent ast.parse elsewhere would fail)
                kind, raw_pid, detail = data.decode("utf-8", errors="replace").split(" ", 2)
                pid = int(raw_pid)
                if kind == "exit":
                    child = self._children.pop(pid, None)
                    if child is not None:
                        child._finish(int(detail))
                    continue
                reply: Forked | str = str(detail)
                if kind == "forked":
                    reply = self._children[pid] = Forked(pid, _reader=self._reader)
                with self._reply:
                    self._replies.append(reply)
                    self._reply.notify_all()
        except (OSError, ValueError) as exc:
            logger.warning("sandbox fork server: reply channel failed: %s", exc)
        finally:
            self._stopped()

    def _stopped(self) -> None:
        """The server is gone: its children are orphans now; kill them and report them killed."""
        self._alive = False
        with self._reply:
            self._reply.notify_all()
        for pid, child in list(self._children.items()):
            killpg(pid)
            child._finish(-9)
        self._children.clear()
        if self.proc.poll() is None:
            logger.warning("sandbox fork server closed its channel while running: %s", self._stderr())

    def _stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._errors.seek(0)
            return self._errors.read(2000).decode("utf-8", errors="replace").strip() or "no message"
        return "no message"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.wait(timeout=2.0)
        if self.proc.poll() is None:
            killpg(self.proc.pid)
            with contextlib.suppress(OSError):
                self.proc.wait()
        self._errors.close()


_servers: dict[tuple, ForkServer] = {}
_servers_lock = threading.Lock()


def server_for(key: tuple, command: Sequence[str], config: dict, env_base: dict[str, str]) -> ForkServer:
    """The running server for ``key`` (interpreter, preload, path), started on first use and again
    after it died or the library forked."""
    with _servers_lock:
        server = _servers.get(key)
        if server is None or not server.usable():
            if server is not None and server._owner == os.getpid():
                server.close()
            env = dict(env_base, **{MARKER_VAR: MARKER_PLACEHOLDER})
            server = _servers[key] = ForkServer(command, config, env)
        return server
