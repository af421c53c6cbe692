"""Killing what a run left behind and removing what it wrote."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time

__all__ = ["MARKER_VAR", "killpg", "reap", "marked_processes", "cleanup", "remove_tree"]

logger = logging.getLogger(__name__)

MARKER_VAR = "FLOWSTEER_SANDBOX"
"""Environment variable carrying the run id; the reaper finds leftover processes by it."""

_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def killpg(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap(uid: int | None, run_id: str) -> None:
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


def marked_processes(marker: str, *, exclude: frozenset[str] = frozenset()) -> list[int]:
    """Pids of live processes whose environment holds ``FLOWSTEER_SANDBOX=<marker>`` or
    ``FLOWSTEER_SANDBOX=<marker>-...`` (zombies, and the run ids in ``exclude``, left out)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    skip = {f"{MARKER_VAR}={run_id}".encode() for run_id in exclude}
    found: list[int] = []
    if not os.path.isdir("/proc"):
        return found
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
        entries = [e for e in environ.split(b"\0") if e == needle or e.startswith(needle + b"-")]
        if state != b"Z" and entries and not skip.intersection(entries):
            found.append(int(name))
    return found


def cleanup(workdir: str, uid: int | None) -> None:
    """Remove the run's directory, and files its uid left in world-writable places."""
    remove_tree(workdir)
    if os.path.lexists(workdir):  # a process that was still dying may have written into it
        time.sleep(0.05)
        remove_tree(workdir)
        if os.path.lexists(workdir):
            logger.warning("sandbox: could not remove %s", workdir)
    if uid is None:
        return
    # Files the run's uid dropped in world-writable places belong to nobody else: remove them.
    for place in _WORLD_WRITABLE:
        with contextlib.suppress(OSError):
            for entry in os.scandir(place):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == uid:
                        remove_tree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(
                            entry.path
                        )


def remove_tree(path: str) -> None:
    """Remove a directory tree the program may have made unreadable (``chmod 0``), changing
    permissions only inside the tree: never its parent, never through a symlink."""
    root = os.path.abspath(path)
    retried: set[str] = set()

    def inside(candidate: str) -> bool:
        return candidate == root or candidate.startswith(root + os.sep)

    def make_writable(func, target, exc_info):
        target = os.path.abspath(target)
        if not isinstance(exc_info[1], PermissionError) or not inside(target) or target in retried:
            return
        retried.add(target)
        with contextlib.suppress(OSError):
            if target != root:
                os.chmod(os.path.dirname(target), 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
                shutil.rmtree(target, onerror=make_writable)
            else:
                func(target)

    shutil.rmtree(root, onerror=make_writable)  # (``onexc`` on 3.12+; ``onerror`` still works)
