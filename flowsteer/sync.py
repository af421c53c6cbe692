"""The one bridge from synchronous code to the library's coroutines.

Every sync entry point (``Interpreter.run``, ``Director.run``, ``Canvas.step``, ``evaluate``,
operator and graph-node ``invoke``, the orchestrator) runs its coroutine through :func:`run_sync`,
so context variables (LangChain's run config and callbacks travel in them) behave the same
everywhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

from flowsteer.errors import UserError

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T], *, refuse_in_loop: str | None = None) -> T:
    """Run ``coro`` to completion from synchronous code.

    With no event loop running in this thread it runs in a fresh one. Inside a running loop it runs
    in a worker thread with its own loop, under a copy of this thread's context variables, unless
    ``refuse_in_loop`` is given: then it raises :class:`~flowsteer.errors.UserError` with that hint
    (for entry points whose async twin should be awaited there, e.g. ``"use await director.arun(...)"``).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    if refuse_in_loop is not None:
        coro.close()  # never started: no "was never awaited" warning
        raise UserError(f"called inside a running event loop; {refuse_in_loop}")
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
