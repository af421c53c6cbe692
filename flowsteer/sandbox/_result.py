"""Turning how a sandboxed process ended into a :class:`SandboxResult`."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from flowsteer.sandbox._types import SandboxResult, parse_error_line

__all__ = ["Outcome", "build_result"]

_SIGNAL_MEANING = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded (output or a file too large)",
    signal.SIGKILL: "killed (CPU hard limit, memory or an explicit kill)",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
}


@dataclass(frozen=True)
class Outcome:
    """What the parent observed: exit status, the bootstrap's status records, captured output."""

    returncode: int
    timed_out: bool
    events: list[dict]
    stdout: bytes
    stderr: bytes
    truncated: bool


def _shell_signal(rc: int, events: dict[str, dict]) -> int:
    """Signal number encoded as ``128 + n`` by bubblewrap or the namespace init, else 0."""
    if rc > 128 and rc - 128 in signal.Signals._value2member_map_ and not events.keys() & {"exit", "error"}:
        return rc - 128
    return 0


def build_result(
    outcome: Outcome, seconds: float, timeout_s: float, require_completion: bool
) -> SandboxResult:
    """Turn what happened into a :class:`SandboxResult`."""
    stdout = outcome.stdout.decode("utf-8", errors="replace")
    stderr = outcome.stderr.decode("utf-8", errors="replace")
    rc = outcome.returncode

    def result(status, error_type=None, message=None, exit_code=rc):
        return SandboxResult(
            status, stdout, stderr, exit_code, error_type, message, seconds, outcome.truncated
        )

    if outcome.timed_out:
        return result("timeout", "Timeout", f"exceeded the {timeout_s:g} s wall-clock limit", exit_code=None)
    events: dict[str, dict] = {str(e.get("event")): e for e in outcome.events}
    signum = -rc if rc < 0 else _shell_signal(rc, events)
    if signum:
        sig = signal.Signals(signum) if signum in signal.Signals._value2member_map_ else None
        name = sig.name if sig else f"signal {signum}"
        meaning = _SIGNAL_MEANING.get(sig, f"terminated by {name}") if sig else f"terminated by {name}"
        return result("killed", name, meaning, exit_code=-signum)
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
