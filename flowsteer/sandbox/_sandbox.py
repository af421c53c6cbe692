"""The :class:`Sandbox`: run untrusted Python in a separate, limited process and describe the outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import os
import queue
import re
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from flowsteer.errors import UserError
from flowsteer.sandbox._cleanup import marked_processes
from flowsteer.sandbox._probe import probe
from flowsteer.sandbox._process import Features, RunHandle, Spawned, run, spawn
from flowsteer.sandbox._result import build_result
from flowsteer.sandbox._types import SandboxLauncher, SandboxLimits, SandboxMode, SandboxResult
from flowsteer.sandbox._verdict import CheckPlan, host_verdict, plan_checks

__all__ = ["Sandbox", "check_program"]

logger = logging.getLogger(__name__)
_instances = itertools.count()
_HUMANEVAL_CHECK = re.compile(r"^def\s+check\s*\(", re.MULTILINE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_program(tests: str | Sequence[str], entry_point: str | None) -> str:
    """The test source run after the candidate code.

    * HumanEval style (``def check(candidate)``): the tests plus ``check(<entry_point>)``.
    * MBPP style (a list of ``assert`` lines) or plain assert code: the asserts as they are.
    """
    text = tests if isinstance(tests, str) else "\n".join(tests)
    if entry_point is not None and not _IDENTIFIER.match(entry_point):
        raise UserError(f"entry_point must be a Python identifier (the function name), got {entry_point!r}")
    if entry_point and _HUMANEVAL_CHECK.search(text):
        text = f"{text}\n\ncheck({entry_point})\n"
    return text


def _check_sources(code: str, tests: str | Sequence[str], entry_point: str | None,
                   ) -> tuple[list[tuple[str, str]], CheckPlan]:
    """What a check sends to the sandbox: with a host verdict, the candidate and the tests' imports
    (the asserts stay here); otherwise the candidate and the whole test program."""
    program = check_program(tests, entry_point)  # validates entry_point
    text = tests if isinstance(tests, str) else "\n".join(tests)
    plan = plan_checks(text, entry_point)
    if plan.host:
        return [("program.py", code), ("setup.py", plan.setup)], plan
    logger.debug("sandbox: tests judged in the sandbox (%s)", plan.reason)
    return [("program.py", code), ("tests.py", program)], plan


class Sandbox:
    """Runs untrusted Python code out of the library's process.

    Each run is a fresh ``python -I`` in a new temporary directory (removed afterwards) with a
    scrubbed environment, CPU/memory/file-size/process limits, stdin closed unless given, capped
    output and a wall-clock timeout that kills the whole process tree. ``mode="auto"`` uses
    bubblewrap when it works here and the process sandbox otherwise; :attr:`mode_in_effect` says
    which. See :mod:`flowsteer.sandbox._process` for the layers and what each guarantees.

    At most ``max_concurrency`` programs of one instance run at once (sync and async calls share the
    limit). After its first run, an instance keeps ``prewarm`` spare interpreters started (each
    still used for exactly one program), so a run does not wait for Python to start.

    ``mode="auto"`` (or the ``FLOWSTEER_SANDBOX_MODE`` environment variable when ``mode`` is not
    given) takes bubblewrap only where process mode would isolate less (no uid of its own, a missing
    namespace); where both isolate the same, the one measured cheaper here wins (see
    :func:`flowsteer.sandbox._probe.choose_backend`). ``launcher`` says how a process-mode run's
    interpreter starts: ``"forkserver"`` forks it from a clean interpreter started once per process
    (``"auto"`` uses it wherever the probe found it works), ``"exec"`` starts a fresh ``python -I``.
    Every result names the backend that ran it (``SandboxResult.backend``).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        mode: SandboxMode | None = None,
        *,
        max_concurrency: int | None = None,
        prewarm: int = 1,
        launcher: SandboxLauncher = "auto",
    ) -> None:
        if mode is None:
            mode = os.environ.get("FLOWSTEER_SANDBOX_MODE", "").strip() or "auto"  # type: ignore[assignment]
            if mode not in ("auto", "bwrap", "process"):
                raise UserError(
                    f"FLOWSTEER_SANDBOX_MODE must be 'auto', 'bwrap' or 'process', got {mode!r}; "
                    "unset it to let the sandbox choose"
                )
        if mode not in ("auto", "bwrap", "process"):
            raise UserError(f"Sandbox mode must be 'auto', 'bwrap' or 'process', got {mode!r}")
        if launcher not in ("auto", "exec", "forkserver"):
            raise UserError(f"Sandbox launcher must be 'auto', 'exec' or 'forkserver', got {launcher!r}")
        if prewarm < 0:
            raise UserError(f"prewarm (spare interpreters kept ready) must be >= 0, got {prewarm}")
        if max_concurrency is not None and max_concurrency < 1:
            raise UserError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.limits = limits or SandboxLimits()
        self.mode: SandboxMode = mode
        self.launcher: SandboxLauncher = launcher
        self.max_concurrency = max_concurrency or max(2, os.cpu_count() or 2)
        self.marker = f"{os.getpid()}-{next(_instances)}"
        """Prefix of the ``FLOWSTEER_SANDBOX`` variable every process of this instance carries."""
        self._runs = itertools.count()
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.prewarm = prewarm
        self._spares: list[Spawned] = []
        self._starting: set[str] = set()
        self._spares_cond = threading.Condition()
        self._refilling = False
        self._finalizer = weakref.finalize(self, _discard_soon, self._spares, self._spares_cond)

    @property
    def features(self) -> Features:
        """The isolation layers in effect (probed on first use, then cached for the process)."""
        features = probe(self.mode)
        if self.launcher == "exec" and features.launcher != "exec":
            return dataclasses.replace(features, launcher="exec")
        if self.launcher == "forkserver" and features.launcher != "forkserver":
            raise UserError(
                f"Sandbox(launcher='forkserver') is not available with the {features.mode} backend here: "
                "it needs process mode with a uid of its own (root) or a PID namespace; use launcher='auto'"
            )
        return features

    @property
    def backend(self) -> str:
        """What runs the programs: ``"bwrap"``, ``"process"`` or ``"process+forkserver"``."""
        return self.features.backend

    @property
    def mode_in_effect(self) -> Literal["bwrap", "process"]:
        """``"bwrap"`` when bubblewrap isolates the programs, ``"process"`` otherwise."""
        return self.features.mode

    def __repr__(self) -> str:
        return (f"Sandbox(mode={self.mode!r}, launcher={self.launcher!r}, limits={self.limits!r}, "
                f"max_concurrency={self.max_concurrency})")

    def run(self, code: str, *, timeout: float | None = None, stdin: str | None = None) -> SandboxResult:
        """Run ``code`` as a program; ``stdin`` (text) is its standard input, closed when ``None``."""
        return self._run([("program.py", code)], timeout, stdin, require_completion=False)

    def check(
        self,
        code: str,
        tests: str | Sequence[str],
        *,
        entry_point: str | None = None,
        timeout: float | None = None,
    ) -> SandboxResult:
        """Run candidate ``code`` and then ``tests`` in the same namespace; ``ok`` means all passed.

        A candidate that exits (``sys.exit``, ``os._exit``) before the tests finish fails with
        ``error_type="EarlyExit"``. The test source is removed from disk before the candidate runs.
        """
        sources, plan = _check_sources(code, tests, entry_point)
        return self._run(sources, timeout, None, require_completion=True, plan=plan)

    async def arun(
        self, code: str, *, timeout: float | None = None, stdin: str | None = None
    ) -> SandboxResult:
        """Async :meth:`run`; cancelling the awaiting task kills the program."""
        return await self._arun([("program.py", code)], timeout, stdin, False)

    async def acheck(
        self,
        code: str,
        tests: str | Sequence[str],
        *,
        entry_point: str | None = None,
        timeout: float | None = None,
    ) -> SandboxResult:
        """Async :meth:`check`."""
        sources, plan = _check_sources(code, tests, entry_point)
        return await self._arun(sources, timeout, None, True, plan)

    def _timeout(self, timeout: float | None) -> float:
        value = self.limits.timeout_s if timeout is None else timeout
        if value <= 0:
            raise UserError(f"timeout must be > 0 seconds, got {value}")
        return float(value)

    def _run(
        self,
        sources: list[tuple[str, str]],
        timeout: float | None,
        stdin: str | None,
        require_completion: bool,
        handle: RunHandle | None = None,
        plan: CheckPlan | None = None,
    ) -> SandboxResult:
        timeout_s = self._timeout(timeout)
        features = self.features
        host = plan is not None and plan.host
        with self._slots:
            start = time.perf_counter()
            spawned = self._take(features)
            outcome = run(
                spawned, sources, limits=self.limits, timeout_s=timeout_s, stdin=stdin, handle=handle,
                probes=tuple(p.source for p in plan.probes) if host and plan is not None else (),
            )
            seconds = time.perf_counter() - start
        result = dataclasses.replace(build_result(outcome, seconds, timeout_s, require_completion and not host),
                                     backend=features.backend)
        if plan is None:
            return result
        if host:
            return host_verdict(result, outcome, plan)
        return dataclasses.replace(result, verdict="sandbox")

    def _run_id(self) -> str:
        return f"{self.marker}-{next(self._runs)}"

    def _spawn(self, features: Features) -> Spawned:
        return spawn(self.limits, features, self._run_id())

    def _take(self, features: Features) -> Spawned:
        """A started interpreter: a spare when one is ready or being started, else a new one."""
        taken = None
        with self._spares_cond:
            while taken is None:
                while self._spares and taken is None:
                    candidate = self._spares.pop(0)
                    if candidate.usable():
                        taken = candidate
                    else:
                        candidate.discard()
                # A spare being started is ready sooner than a new interpreter would be.
                if taken is not None or not self._refilling or not self._spares_cond.wait(timeout=2.0):
                    break
        if self.prewarm:
            _SPAWNER.submit(_refill_later(weakref.ref(self), features))
        return taken or self._spawn(features)

    def _refill(self, features: Features) -> None:
        with self._spares_cond:
            if self._refilling:
                return
            self._refilling = True
        try:
            while len(self._spares) < self.prewarm:
                run_id = self._run_id()
                with self._spares_cond:
                    self._starting.add(run_id)  # not a leftover, even before it joins the list
                try:
                    spare = spawn(self.limits, features, run_id, spare=True)
                    with self._spares_cond:
                        self._spares.append(spare)
                        self._spares_cond.notify_all()
                finally:
                    with self._spares_cond:
                        self._starting.discard(run_id)
        except OSError as exc:
            logger.warning("sandbox: could not start a spare interpreter: %s", exc)
        finally:
            with self._spares_cond:
                self._refilling = False
                self._spares_cond.notify_all()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="flowsteer-sandbox")
            return self._pool

    async def _arun(self, sources, timeout, stdin, require_completion, plan=None) -> SandboxResult:
        handle = RunHandle()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._executor(), self._run, sources, timeout, stdin, require_completion, handle, plan
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            handle.cancel()
            raise

    def running_processes(self) -> list[int]:
        """Pids of processes started by this instance that are still alive (normally none).

        Found by the ``FLOWSTEER_SANDBOX`` marker in their environment; for tests and diagnostics.
        """
        with self._spares_cond:
            spares = frozenset(spare.run_id for spare in self._spares) | frozenset(self._starting)
        return marked_processes(self.marker, exclude=spares)

    def close(self) -> None:
        """Stop the spare interpreters and the async worker threads (the sandbox stays usable)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        _discard_all(self._spares, self._spares_cond)


def _refill_later(ref: weakref.ref[Sandbox], features: Features):
    def refill() -> None:
        sandbox = ref()  # the spawner must not keep a sandbox alive
        if sandbox is not None:
            sandbox._refill(features)

    return refill


class _Spawner:
    """One long-lived thread that starts the spare interpreters of every sandbox in this process.

    A spare must be started by a thread that outlives it: bubblewrap's ``--die-with-parent``
    (``PR_SET_PDEATHSIG``) fires when the *thread* that forked the process exits, which killed
    spares started by short-lived threads.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, job) -> None:
        with self._lock:
            self._ensure_thread()
        self._queue.put(job)

    def post(self, job) -> None:
        """:meth:`submit` for a finalizer: never waits for the spawner's lock (the collector may
        have interrupted its holder in this very thread, which then starts the thread itself)."""
        self._queue.put(job)  # SimpleQueue.put is reentrant
        if self._lock.acquire(blocking=False):
            try:
                self._ensure_thread()
            finally:
                self._lock.release()

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._serve, name="flowsteer-sandbox-spawner", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:  # a failed refill only costs the next run a cold start
                logger.exception("sandbox: starting a spare interpreter failed")
            del job


_SPAWNER = _Spawner()


def _discard_soon(spares: list[Spawned], lock: threading.Condition) -> None:
    """The finalizer of a collected sandbox. The collector runs it in whichever thread happens to
    allocate, the fork server's reply reader included, and a discard waits for that reader's exit
    reports (it deadlocked every later run of the process): so the spawner thread discards. At
    interpreter exit (the main thread has stopped) the exiting thread does it itself."""
    if threading.main_thread().is_alive():
        _SPAWNER.post(functools.partial(_discard_all, spares, lock))
    else:
        _discard_all(spares, lock)


def _discard_all(spares: list[Spawned], lock: threading.Condition) -> None:
    with lock:
        taken = list(spares)
        spares.clear()
    for spare in taken:
        spare.discard()
