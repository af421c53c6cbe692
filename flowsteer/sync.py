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
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from flowsteer.errors import UserError

__all__ = ["run_sync"]

T = TypeVar("T")


class _Runner:
    """A thread's reusable event loop, closed when the thread's locals go.

    A thread that ends closes its loop fully (async generators and the default executor shut
    down). At interpreter exit no thread can start any more, and ``Runner.close`` would start one
    to shut the default executor down and wait for it forever (the executor's workers were joined
    already by then): so during finalization only the loop itself is closed.
    """

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        try:
            if sys.is_finalizing():
                self.runner.get_loop().close()
            else:
                self.runner.close()
        except Exception:  # noqa: BLE001 - finalizer: a loop that cannot be closed here is dropped
            pass


_THREAD = threading.local()


def _thread_runner() -> asyncio.Runner:
    holder = getattr(_THREAD, "holder", None)
    if holder is None:
        holder = _THREAD.holder = _Runner()
    return holder.runner


def run_sync(coro: Coroutine[Any, Any, T], *, refuse_in_loop: str | None = None,
             reuse_loop: bool = False) -> T:
    """Run ``coro`` to completion from synchronous code.

    With no event loop running in this thread it runs in a fresh one, or with ``reuse_loop=True`` in
    this thread's own loop, kept for the next call (what a compiled graph's nodes use under sync
    ``invoke``: one loop per worker thread instead of one per node); the coroutine sees this
    thread's context variables either way. Inside a running loop it runs in a worker thread with its
    own loop, under a copy of this thread's context variables, unless ``refuse_in_loop`` is given:
    then it raises :class:`~flowsteer.errors.UserError` with that hint (for entry points whose async
    twin should be awaited there, e.g. ``"use await director.arun(...)"``).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if reuse_loop:
            return _thread_runner().run(coro, context=contextvars.copy_context())
        return asyncio.run(coro)
    if refuse_in_loop is not None:
        coro.close()  # never started: no "was never awaited" warning
        raise UserError(f"called inside a running event loop; {refuse_in_loop}")
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
