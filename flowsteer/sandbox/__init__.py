"""Run generated code out of the library's process (DESIGN.md section 6).

>>> sandbox = Sandbox(SandboxLimits(timeout_s=5))
>>> sandbox.run("print(6 * 7)").stdout
'42\\n'

Every program runs in an interpreter of its own, used for that program only (forked from a clean
fork server, or a fresh ``python -I``), in a temporary directory, with a scrubbed environment,
resource limits, closed stdin, capped output and a wall-clock timeout that kills its whole process
tree. :class:`SandboxResult` says what happened (``ok``, ``error`` with the exception type and
message, ``timeout``, ``killed`` by a signal) and which backend ran it. Bubblewrap is used where it
isolates more than process mode can here, or the same for less.
"""

from flowsteer.sandbox._sandbox import Sandbox, check_program
from flowsteer.sandbox._types import (
    SandboxLauncher,
    SandboxLimits,
    SandboxMode,
    SandboxResult,
    SandboxStatus,
    parse_error_line,
)

__all__ = [
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "SandboxStatus",
    "SandboxMode",
    "SandboxLauncher",
    "check_program",
    "parse_error_line",
]
