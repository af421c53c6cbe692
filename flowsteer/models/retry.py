"""Bounded retries with exponential backoff for chat model calls (the executor, usually).

FlowSteer's operators call the executor once per node and let a backend error abort the workflow
run (the interpreter records it as the run's error). Wrap the executor to absorb transient
failures first:

>>> from flowsteer.models.retry import with_retries                                   # doctest: +SKIP
>>> executor = with_retries(load_chat_model("openai:gpt-4o-mini"), attempts=3, backoff=0.5, timeout=60)

Each call is tried at most ``attempts`` times. After failure ``k`` the wrapper sleeps
``min(max_backoff, backoff * 2 ** (k - 1))`` seconds, stretched by up to ``jitter`` (seeded), so a
burst of failures does not retry in lock-step. ``timeout`` bounds every attempt (a hung call is
cancelled and counts as a failure). Developer mistakes (:class:`~flowsteer.errors.UserError`) and
cancellation are never retried. When every attempt failed, :class:`RetriesExhausted` is raised
naming the attempts and each error, so the trajectory and the eval results file say what happened.

The loop is tenacity's (``stop_after_attempt``, a seeded exponential wait, ``retry_if_exception``).
It is not LangChain's ``Runnable.with_retry`` because that returns a ``RunnableRetry``, no longer a
chat model (no ``bind``, no ``_identifying_params`` for call caches, no sampled-token metadata for
the trainer), and it has no per-attempt timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import ConfigDict, PrivateAttr

from flowsteer.errors import FlowSteerError, UserError

__all__ = ["RetryingChatModel", "RetriesExhausted", "RetryStats", "with_retries", "is_transient"]

logger = logging.getLogger(__name__)


class RetriesExhausted(FlowSteerError):
    """Every attempt of one model call failed; ``errors`` lists them in order."""

    def __init__(self, attempts: int, errors: list[str]) -> None:
        self.attempts = attempts
        self.errors = tuple(errors)
        super().__init__(f"model call failed after {attempts} attempt(s); last error: {errors[-1]}")


@dataclass(frozen=True)
class RetryStats:
    """Counters of a :class:`RetryingChatModel` so far."""

    calls: int = 0
    """Calls made to the wrapper."""
    attempts: int = 0
    """Calls made to the wrapped model (first tries and retries)."""
    retries: int = 0
    """Attempts after a failure."""
    timeouts: int = 0
    """Attempts cut off by ``timeout``."""
    gave_up: int = 0
    """Calls that raised :class:`RetriesExhausted`."""
    max_attempts_per_call: int = 0
    """The most attempts any single call needed."""


def is_transient(exc: BaseException) -> bool:
    """The default retry test: any ordinary exception except a developer mistake (UserError)."""
    return isinstance(exc, Exception) and not isinstance(exc, UserError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class RetryingChatModel(BaseChatModel):
    """A chat model that retries ``inner`` with bounded, jittered exponential backoff.

    Build it with :func:`with_retries`. Replies are passed through unchanged (usage metadata and
    sampled-token metadata included). :attr:`stats` counts calls, attempts, retries and give-ups.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    """The model every attempt calls."""
    attempts: int = 3
    """Most tries per call (1 = no retry)."""
    backoff: float = 0.5
    """Seconds slept after the first failure; doubled after each further one."""
    max_backoff: float = 8.0
    """Cap of one backoff sleep, before jitter."""
    jitter: float = 0.25
    """Each sleep is stretched by a seeded random fraction in ``[0, jitter]``."""
    timeout: float | None = None
    """Seconds one attempt may take before it is cancelled and counted as failed (None: unbounded)."""
    seed: int = 0
    """Seed of the jitter."""
    retry_on: Callable[[BaseException], bool] = is_transient
    """Whether an exception is worth another attempt."""
    _rng: random.Random = PrivateAttr()
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _stats: RetryStats = PrivateAttr(default_factory=RetryStats)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.attempts < 1:
            raise UserError(f"with_retries: attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.jitter < 0:
            raise UserError("with_retries: backoff, max_backoff and jitter must be >= 0")
        if self.timeout is not None and self.timeout <= 0:
            raise UserError(f"with_retries: timeout must be > 0 seconds or None, got {self.timeout}")
        self._rng = random.Random(self.seed)

    @property
    def _llm_type(self) -> str:
        return f"retrying-{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Retries do not change what the model answers: keep the wrapped model's identity (call caches).
        return {"inner_type": self.inner._llm_type, **self.inner._identifying_params}

    @property
    def stats(self) -> RetryStats:
        """A snapshot of the counters."""
        return self._stats

    def delay(self, failures: int) -> float:
        """Seconds to sleep after the ``failures``-th failed attempt of a call."""
        base = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        with self._lock:
            stretch = self._rng.random() * self.jitter
        return base * (1.0 + stretch)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            s = self._stats
            values = {k: getattr(s, k) + deltas.get(k, 0) for k in ("calls", "attempts", "retries", "timeouts",
                                                                     "gave_up")}
            most = max(s.max_attempts_per_call, deltas.get("max_attempts_per_call", 0))
            self._stats = RetryStats(**values, max_attempts_per_call=most)

    # -- the retry loop is tenacity's (stop, wait and retry policies); what LangChain's
    # ``with_retry`` lacks here: the wrapper stays a chat model (bind, caches keyed on the inner
    # model, sampled-token metadata passed through) and every attempt can be cut off by ``timeout``.
    def _policy(self, errors: list[str]) -> dict[str, Any]:
        from tenacity import retry_if_exception, stop_after_attempt

        def attempt_failed(state: Any) -> None:  # after each failed, retryable attempt
            exc = state.outcome.exception()
            if isinstance(exc, TimeoutError):
                self._count(timeouts=1)
            errors.append(_describe(exc) if str(exc) else f"TimeoutError: no reply within {self.timeout}s"
                          if isinstance(exc, TimeoutError) else _describe(exc))
            if state.attempt_number >= self.attempts:
                self._count(gave_up=1, max_attempts_per_call=state.attempt_number)
                logger.warning("giving up after %d attempt(s): %s", state.attempt_number, errors[-1])
            else:
                logger.info("attempt %d of %d failed (%s); retrying", state.attempt_number, self.attempts,
                            errors[-1])

        def give_up(state: Any) -> Any:
            raise RetriesExhausted(state.attempt_number, errors) from state.outcome.exception()

        return dict(stop=stop_after_attempt(self.attempts), wait=lambda state: self.delay(state.attempt_number),
                    retry=retry_if_exception(self.retry_on), after=attempt_failed, retry_error_callback=give_up)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        from tenacity import AsyncRetrying

        errors: list[str] = []
        self._count(calls=1)
        async for attempt in AsyncRetrying(**self._policy(errors)):
            with attempt:
                number = attempt.retry_state.attempt_number
                self._count(attempts=1, retries=int(number > 1))
                try:
                    # the wrapped model's own _agenerate under this call's run manager: one traced run
                    call = self.inner._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
                    result = await (asyncio.wait_for(call, self.timeout) if self.timeout is not None else call)
                except Exception as exc:
                    if not self.retry_on(exc):
                        self._count(max_attempts_per_call=number)
                    raise
                self._count(max_attempts_per_call=number)
                return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        from tenacity import Retrying

        errors: list[str] = []
        self._count(calls=1)
        for attempt in Retrying(**self._policy(errors)):
            with attempt:
                number = attempt.retry_state.attempt_number
                self._count(attempts=1, retries=int(number > 1))
                try:
                    result = self._generate_bounded(messages, stop, run_manager, kwargs)
                except Exception as exc:
                    if not self.retry_on(exc):
                        self._count(max_attempts_per_call=number)
                    raise
                self._count(max_attempts_per_call=number)
                return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _generate_bounded(self, messages: list[BaseMessage], stop: list[str] | None, run_manager: Any,
                          kwargs: dict[str, Any]) -> ChatResult:
        if self.timeout is None:
            return self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        # A blocking call cannot be cancelled: it runs in a daemon-like worker that is abandoned
        # (not joined) when the attempt times out, so the caller is never held past ``timeout``.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            future = pool.submit(self.inner._generate, messages, stop=stop, run_manager=run_manager, **kwargs)
            try:
                return future.result(timeout=self.timeout)
            except concurrent.futures.TimeoutError as exc:
                raise TimeoutError(f"no reply within {self.timeout}s") from exc
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def with_retries(model: BaseChatModel, attempts: int = 3, backoff: float = 0.5, *, max_backoff: float = 8.0,
                 jitter: float = 0.25, timeout: float | None = None, seed: int = 0,
                 retry_on: Callable[[BaseException], bool] | None = None) -> RetryingChatModel:
    """``model`` wrapped so each call is tried at most ``attempts`` times (see the module docstring)."""
    return RetryingChatModel(inner=model, attempts=attempts, backoff=backoff, max_backoff=max_backoff,
                             jitter=jitter, timeout=timeout, seed=seed, retry_on=retry_on or is_transient)
