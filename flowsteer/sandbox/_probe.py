"""Find out, once per process, which isolation layers actually work on this machine.

Every layer is tried for real with a trivial program (a ``bwrap`` binary that exists may still fail
in a container without user namespaces); the answer is cached.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import statistics
import subprocess
import threading
import time

from flowsteer.errors import UserError
from flowsteer.sandbox._process import CLONE_NEWPID, NAMESPACES, Features, execute
from flowsteer.sandbox._result import build_result
from flowsteer.sandbox._types import SandboxLimits

__all__ = ["probe", "choose_backend", "same_isolation"]

logger = logging.getLogger(__name__)

_PROBE_LIMITS = SandboxLimits(timeout_s=20.0)
_PROBE_CODE = "print('flowsteer-probe')"


def _attempt(features: Features) -> tuple[int | None, str]:
    """Run the probe program once: (namespace flags entered, or None on failure; the reason)."""
    start = time.perf_counter()
    try:
        outcome = execute(
            [("probe.py", _PROBE_CODE)], limits=_PROBE_LIMITS, features=features, timeout_s=20.0,
            run_id=f"probe-{os.getpid()}",
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not start: {exc}"
    result = build_result(outcome, time.perf_counter() - start, 20.0, require_completion=True)
    if not (result.ok and result.stdout.strip() == "flowsteer-probe"):
        return None, f"{result}: {result.stderr.strip()[-300:]}"
    return int(next((e.get("namespaces", 0) for e in outcome.events if e.get("event") == "start"), 0)), ""


def _works(features: Features, attempts: int = 3) -> tuple[bool, int, str]:
    """Whether ``features`` work here (retried: a loaded machine can fail one start); the
    namespace flags the bootstrap entered; the last failure's reason."""
    reason = ""
    for _ in range(attempts):
        entered, reason = _attempt(features)
        if entered is not None:
            return True, entered, ""
        logger.info("sandbox probe %s failed: %s", features, reason)
    return False, 0, reason


_lock = threading.Lock()


def probe(mode: str) -> Features:
    """The strongest working :class:`Features` for ``mode`` ("auto", "bwrap" or "process")."""
    with _lock:  # concurrent first runs wait for one probe instead of racing several
        return _probe(mode)


@functools.cache
def _probe(mode: str) -> Features:
    own_uid = os.geteuid() == 0
    if own_uid:
        ok, _, reason = _works(Features("process", own_uid=True))
        if not ok:
            logger.warning(
                "sandbox: running programs under a separate uid failed (%s); programs will run "
                "as root. Is the interpreter readable by other users?",
                reason,
            )
            own_uid = False
    bwrap_features = None
    if mode in ("auto", "bwrap"):
        bwrap = shutil.which("bwrap")
        ok, _, reason = _works(Features("bwrap", bwrap=bwrap, own_uid=own_uid)) if bwrap else (False, 0, "")
        if ok:
            bwrap_features = Features("bwrap", bwrap=bwrap, own_uid=own_uid)
            if mode == "bwrap":
                return bwrap_features
        elif mode == "bwrap":
            state = f"not working here ({reason})" if bwrap else "not installed"
            raise UserError(
                f"Sandbox(mode='bwrap'): bubblewrap is {state}. Install it (apt-get install "
                "bubblewrap) or use mode='auto' or mode='process'."
            )
    process = _process_features(own_uid)
    if bwrap_features is None:
        return process
    return choose_backend(process, bwrap_features, _cost(process), _cost(bwrap_features))


def _process_features(own_uid: bool) -> Features:
    ok, entered, _ = _works(Features("process", own_uid=own_uid, namespaces=NAMESPACES))
    namespaces = entered if ok else 0
    if namespaces != NAMESPACES:
        logger.info(
            "sandbox: namespaces entered %#x of %#x (kernel or container restrictions)",
            namespaces,
            NAMESPACES,
        )
    features = Features("process", own_uid=own_uid, namespaces=namespaces)
    if own_uid or namespaces & CLONE_NEWPID:
        # Leftovers are reaped by uid or by the PID namespace, not by the environment marker
        # alone: runs may be forked from the fork server.
        forked = dataclasses.replace(features, launcher="forkserver")
        ok, entered, reason = _works(forked)
        if ok and entered == namespaces:
            return forked
        logger.info("sandbox: the fork server did not work here (%s); each run starts python", reason)
    return features


def same_isolation(process: Features, bwrap: Features) -> bool:
    """Whether process mode isolates as bubblewrap does: a uid of its own (so the host's files are
    read-only to the program, as bubblewrap's read-only ``/`` makes them) and every namespace
    (network, PID, mount with the private filesystem). Without a uid of its own a process-mode
    program may write the user's files, which bubblewrap prevents."""
    return process.mode == "process" and process.own_uid and process.namespaces == NAMESPACES


def choose_backend(process: Features, bwrap: Features, process_s: float, bwrap_s: float) -> Features:
    """``mode="auto"``: bubblewrap unless process mode gives the same isolation for less (measured)."""
    if not same_isolation(process, bwrap):
        logger.info("sandbox: bubblewrap chosen (process mode here lacks a uid of its own or a namespace)")
        return bwrap
    chosen = process if process_s <= bwrap_s else bwrap
    logger.info(
        "sandbox: %s chosen by cost (%.1f ms per run with %s, %.1f ms with bwrap; same isolation)",
        chosen.backend, process_s * 1000, process.backend, bwrap_s * 1000,
    )
    return chosen


def _cost(features: Features, runs: int = 5) -> float:
    """Median wall time of a trivial run with ``features`` (one warm-up run first)."""
    times = []
    for index in range(runs + 1):
        start = time.perf_counter()
        entered, _ = _attempt(features)
        if entered is None:
            return float("inf")
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times)
