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


def test_sync_graph_invoke_reuses_one_event_loop_per_thread_with_the_callers_context():
    import asyncio
    import contextvars
    import threading

    from flowsteer.integrations import compile_workflow
    from flowsteer.operators import Operator, OperatorResult, OperatorSpec, Role
    from flowsteer.operators.registry import OperatorRegistry
    from flowsteer.sync import run_sync
    from flowsteer.testing import SimulatedExecutor
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.interpreter import Interpreter

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("sync_marker", default="unset")
    seen: list[tuple[int, object, str]] = []  # the loops themselves: kept alive, so never confused

    class Probe(Operator):
        async def arun(self, call, config=None):
            seen.append((threading.get_ident(), asyncio.get_running_loop(), marker.get()))
            return OperatorResult(output=f"{call.input or ''}+")

    registry = OperatorRegistry([OperatorSpec("Probe", Role.SOLVING, "Records its loop.", Probe)])
    graph = compile_workflow(parse("Probe -> Probe -> Probe -> Probe", registry),
                             executor=Interpreter(SimulatedExecutor(), registry=registry))
    marker.set("first run")
    assert graph.invoke({"question": "q"})["answer"] == "++++"
    marker.set("second run")
    assert graph.invoke({"question": "q"})["answer"] == "++++"
    loops_per_thread: dict[int, set[int]] = {}
    for thread, loop, _ in seen:
        loops_per_thread.setdefault(thread, set()).add(id(loop))
    assert all(len(loops) == 1 for loops in loops_per_thread.values()), loops_per_thread  # not one per node
    assert [m for _, _, m in seen] == ["first run"] * 4 + ["second run"] * 4  # the caller's context each time

    async def entry() -> object:
        return asyncio.get_running_loop()

    # the other entry points keep a fresh loop per call; reuse_loop keeps the thread's
    assert run_sync(entry()) is not run_sync(entry())
    assert run_sync(entry(), reuse_loop=True) is run_sync(entry(), reuse_loop=True)


_EXIT_PROGRAM = """
import asyncio, threading
from flowsteer.sync import run_sync

async def uses_the_default_executor():
    return await asyncio.get_running_loop().run_in_executor(None, lambda: 1)

assert run_sync(uses_the_default_executor(), reuse_loop=True) == 1  # the main thread's loop

def worker():
    assert run_sync(uses_the_default_executor(), reuse_loop=True) == 1

thread = threading.Thread(target=worker)
thread.start()
thread.join()  # the worker's loop is closed when the thread's locals go
print("done")
"""


def test_a_process_whose_reused_loop_has_a_default_executor_exits() -> None:
    # Closing a kept loop at interpreter exit must not wait for a thread that can no longer start
    # (the process would hang after its last line: what kept CI from finishing).
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _EXIT_PROGRAM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
