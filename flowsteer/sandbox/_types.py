"""Values of the sandbox: the limits a run gets and the structured result it returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from flowsteer.errors import UserError

__all__ = ["SandboxLimits", "SandboxResult", "SandboxStatus", "SandboxMode", "SandboxLauncher", "parse_error_line"]

SandboxStatus = Literal["ok", "error", "timeout", "killed"]
SandboxMode = Literal["auto", "bwrap", "process"]
SandboxLauncher = Literal["auto", "exec", "forkserver"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every program the sandbox runs."""

    timeout_s: float = 10.0
    """Wall-clock limit; on expiry the whole process tree is killed and the status is ``timeout``."""
    memory_mb: int = 512
    """Address-space limit (RLIMIT_AS) of each process; allocations beyond it raise MemoryError."""
    cpu_s: float | None = None
    """CPU-time limit (RLIMIT_CPU); ``None`` means ``timeout_s`` rounded up plus one second."""
    file_size_mb: int = 16
    """Largest file a program may write (RLIMIT_FSIZE), including its captured stdout and stderr."""
    max_processes: int = 32
    """Processes (and threads) the program may have at once (RLIMIT_NPROC; per run when the
    sandbox gives each run its own uid or user namespace)."""
    disk_mb: int = 256
    """Total disk a program may fill: its working directory and every world-writable directory it
    sees (``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``, ...) are one private tmpfs of this
    size, gone when the run ends (process mode with namespaces; bubblewrap gives private ``/tmp``,
    ``/var/tmp`` and ``/dev/shm`` without one size cap)."""
    max_output_bytes: int = 64_000
    """Captured stdout and stderr are each cut to this many bytes (``truncated`` is then set)."""
    isolate_user: bool = True
    """When the library runs as root, run each program under a fresh unprivileged uid (it then cannot
    read root's files, signal the library or outlive the run). Ignored when not root."""
    block_network: bool = True
    """Run without network: a private network namespace when the kernel allows one, otherwise a
    best-effort guard that makes ``socket.socket`` raise PermissionError."""
    preload: tuple[str, ...] = ("typing", "math", "collections", "itertools", "functools", "re", "heapq")
    """Standard modules a waiting (spare) interpreter imports before its program arrives, so that
    the common imports of generated code cost nothing at run time. Use ``()`` for a bare start."""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise UserError(f"SandboxLimits.timeout_s must be > 0 seconds, got {self.timeout_s}")
        if self.memory_mb < 64:
            raise UserError(
                f"SandboxLimits.memory_mb must be >= 64 (Python needs it to start), got {self.memory_mb}"
            )
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise UserError(f"SandboxLimits.cpu_s must be > 0 or None, got {self.cpu_s}")
        if self.file_size_mb < 1:
            raise UserError(f"SandboxLimits.file_size_mb must be >= 1, got {self.file_size_mb}")
        if self.max_processes < 2:
            raise UserError(f"SandboxLimits.max_processes must be >= 2, got {self.max_processes}")
        if isinstance(self.preload, str):
            raise UserError(
                "SandboxLimits.preload must be a tuple of module names, e.g. ('math',), not a string"
            )
        if self.disk_mb < 1:
            raise UserError(f"SandboxLimits.disk_mb must be >= 1, got {self.disk_mb}")
        if self.max_output_bytes < 1:
            raise UserError(f"SandboxLimits.max_output_bytes must be >= 1, got {self.max_output_bytes}")

    def cpu_seconds(self, timeout_s: float) -> int:
        """The RLIMIT_CPU soft limit for a run with this wall-clock timeout."""
        if self.cpu_s is not None:
            return max(1, int(-(-self.cpu_s // 1)))
        return int(-(-timeout_s // 1)) + 1


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program."""

    status: SandboxStatus
    """``ok`` (exit 0), ``error`` (exception or non-zero exit), ``timeout`` (wall clock), ``killed``
    (ended by a signal: a resource limit or the program itself)."""
    stdout: str
    stderr: str
    exit_code: int | None
    """The process exit code (negative: the signal number); ``None`` after a timeout."""
    error_type: str | None
    """Exception class name (``AssertionError``), ``SystemExit``, ``Timeout`` or the signal name."""
    error_message: str | None
    seconds: float
    """Wall-clock time of the run, start-up included."""
    truncated: bool
    """True when stdout or stderr was longer than ``max_output_bytes`` and was cut."""
    verdict: Literal["host", "sandbox"] | None = None
    """How a :meth:`~flowsteer.sandbox.Sandbox.check` was judged: ``"host"`` when the library
    compared the candidate's values with the expected ones itself (the expected values never
    entered the sandbox, so the candidate cannot forge a pass), ``"sandbox"`` when the tests had to
    run inside the sandbox; ``None`` for a plain run."""
    backend: str | None = None
    """What ran the program: ``"bwrap"``, ``"process"`` or ``"process+forkserver"`` (``None`` for a
    result not made by a :class:`~flowsteer.sandbox.Sandbox`)."""

    @property
    def ok(self) -> bool:
        """True when the program ran to completion and exited with status 0."""
        return self.status == "ok"

    @property
    def error(self) -> str | None:
        """``"Type: message"`` for a failed run, ``None`` for a successful one."""
        if self.ok:
            return None
        if self.error_message:
            return f"{self.error_type}: {self.error_message}"
        return self.error_type or self.status

    def __str__(self) -> str:
        head = f"{self.status} in {self.seconds:.2f}s"
        return head if self.ok else f"{head} ({self.error})"


_ERROR_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")


def parse_error_line(stderr: str) -> tuple[str, str | None] | None:
    """Exception type and message from the last line of the last Python traceback in ``stderr``.

    ``"ValueError: bad"`` gives ``("ValueError", "bad")``; a dotted class keeps only its last part.
    Returns ``None`` when ``stderr`` holds no traceback.
    """
    start = stderr.rfind("Traceback (most recent call last)")
    if start < 0:
        start = stderr.rfind('File "')  # a SyntaxError report has no traceback header
        if start < 0:
            return None
    for line in reversed(stderr[start:].strip().splitlines()):
        match = _ERROR_LINE.match(line.strip())
        if match:
            message = match["msg"]
            return match["type"].rsplit(".", 1)[-1], message if message else None
    return None
