"""The one sync bridge (``run_sync``) shared by operators, compiled graph nodes and the orchestrator."""

from __future__ import annotations


def test_the_one_sync_bridge_keeps_context_variables_inside_a_running_loop():
    import asyncio
    import contextvars

    from flowsteer.operators.runnable import run_sync
    from integrations import orchestrator
    from integrations.langgraph import _nodes

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    async def read() -> str:
        return marker.get()

    async def inside_a_loop() -> str:
        marker.set("from the caller")
        return run_sync(read())  # a sync call made while this thread runs a loop

    assert asyncio.run(inside_a_loop()) == "from the caller"
    assert run_sync(read()) == "unset"
    assert _nodes.run_sync is run_sync and orchestrator.run_sync is run_sync


def test_sync_entry_points_share_the_bridge_and_refuse_inside_a_loop_with_the_async_twin():
    import asyncio

    import pytest

    from flowsteer.errors import UserError
    from flowsteer.sync import run_sync

    async def answer():
        return 42

    assert run_sync(answer()) == 42

    async def inside():
        with pytest.raises(UserError, match="use `await thing.arun"):
            run_sync(answer(), refuse_in_loop="use `await thing.arun(...)` there")
        return run_sync(answer())  # without a refusal it runs in a worker thread

    assert asyncio.run(inside()) == 42
    from flowsteer.operators import runnable

    assert runnable.run_sync is run_sync  # the old import path still works
