"""Find out, once per process, which isolation layers actually work on this machine.

Every layer is tried for real with a trivial program (a ``bwrap`` binary that exists may still fail
in a container without user namespaces); the answer is cached.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import time

from flowsteer.errors import UserError
from flowsteer.sandbox._process import NAMESPACES, Features, execute
from flowsteer.sandbox._result import build_result
from flowsteer.sandbox._types import SandboxLimits

__all__ = ["probe"]

logger = logging.getLogger(__name__)

_PROBE_LIMITS = SandboxLimits(timeout_s=20.0)
_PROBE_CODE = "print('flowsteer-probe')"


def _works(features: Features) -> tuple[bool, int]:
    """Run the probe program; returns (it worked, namespace flags the bootstrap entered)."""
    start = time.perf_counter()
    try:
        outcome = execute(
            [("probe.py", _PROBE_CODE)], limits=_PROBE_LIMITS, features=features, timeout_s=20.0,
            run_id=f"probe-{os.getpid()}",
        )  # fmt: skip
        seconds = time.perf_counter() - start
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("sandbox probe %s failed to start: %s", features, exc)
        return False, 0
    result = build_result(outcome, seconds, 20.0, require_completion=True)
    entered = next((e.get("namespaces", 0) for e in outcome.events if e.get("event") == "start"), 0)
    if not (result.ok and result.stdout.strip() == "flowsteer-probe"):
        logger.info("sandbox probe %s failed: %s %s", features, result, result.stderr[-500:])
        return False, 0
    return True, int(entered)


@functools.cache
def probe(mode: str) -> Features:
    """The strongest working :class:`Features` for ``mode`` ("auto", "bwrap" or "process")."""
    own_uid = os.geteuid() == 0
    if own_uid and not _works(Features("process", own_uid=True))[0]:
        logger.warning(
            "sandbox: running programs under a separate uid failed (is the interpreter "
            "readable by other users?); falling back to the library's own uid"
        )
        own_uid = False
    if mode in ("auto", "bwrap"):
        bwrap = shutil.which("bwrap")
        if bwrap and _works(Features("bwrap", bwrap=bwrap, own_uid=own_uid))[0]:
            return Features("bwrap", bwrap=bwrap, own_uid=own_uid)
        if mode == "bwrap":
            raise UserError(
                "Sandbox(mode='bwrap'): bubblewrap is "
                + ("not working here" if bwrap else "not installed")
                + ". Install it (apt-get install bubblewrap) or use mode='auto' or mode='process'."
            )
    ok, entered = _works(Features("process", own_uid=own_uid, namespaces=NAMESPACES))
    namespaces = entered if ok else 0
    if namespaces != NAMESPACES:
        logger.info(
            "sandbox: namespaces entered %#x of %#x (kernel or container restrictions)",
            namespaces,
            NAMESPACES,
        )
    return Features("process", own_uid=own_uid, namespaces=namespaces)
