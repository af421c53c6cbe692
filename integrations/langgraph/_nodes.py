"""The structural nodes of a compiled workflow (fan-out, fan-in, loop gate, prepare, finalize),
the routers of its conditional edges, and how a node reads and writes its lane."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langgraph.types import Overwrite

from flowsteer.errors import UserError
from flowsteer.sync import run_sync
from flowsteer.workflow.interpreter import final_answer

from .state import MAIN_LANE, LaneState, TaskState, as_value, output_key, task_to_state

__all__ = [
    "read_lane", "write_lane", "run_sync", "route_of", "join_route", "loop_gate", "loop_exit", "fan_out", "fan_in",
    "prepare", "finalize", "start_run", "end_run", "InlineNode", "AsyncNode",
]

T = TypeVar("T")


def read_lane(state: Mapping[str, Any], lane: str) -> LaneState:
    """The flow of ``lane`` (the main lane lives in top-level keys)."""
    if lane == MAIN_LANE:
        return LaneState(
            value=state.get("value"),
            feedback=state.get("feedback"),
            checks=state.get("checks") or {},
            verdict=state.get("verdict"),
            route=state.get("route") or "",
        )
    return (state.get("lanes") or {}).get(lane, LaneState())


def write_lane(lane: str, update: LaneState) -> dict[str, Any]:
    """The state update that writes ``update`` into ``lane``."""
    if lane == MAIN_LANE:
        return {k: v for k, v in update.items() if k != "done"}
    return {"lanes": {lane: update}}


class InlineNode(Runnable[Any, Any]):
    """A structural node or a router: a quick, pure computation on the state, run inline.

    Given to LangGraph as a plain sync function it would run in a worker thread per call under
    ``ainvoke``, a thread hop that costs more than the work (and waits for a core under load).
    """

    def __init__(self, name: str, func: Callable[[Mapping[str, Any]], Any]) -> None:
        self.name = name
        self.func = func

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Compute the update (or route) from the state."""
        return self.func(input)

    async def ainvoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None,
                      **kwargs: Any) -> Any:
        """Compute the update (or route) on the event loop thread."""
        return self.func(input)


class AsyncNode(Runnable[Any, dict[str, Any]]):
    """An operator node: an async body with a sync path, and no run of its own.

    LangGraph already opens a run named after every node and hands the node its child config, so
    the operator's run (and its model calls) nest under the node; a ``RunnableLambda`` would open a
    second, identically named run inside it and inspect the function's signature on every call.
    """

    def __init__(self, name: str,
                 afunc: Callable[[Mapping[str, Any], RunnableConfig], Coroutine[Any, Any, dict[str, Any]]]) -> None:
        self.name = name
        self.afunc = afunc

    async def ainvoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None,
                      **kwargs: Any) -> dict[str, Any]:
        """Run the node on the event loop (``ainvoke``/``astream`` of the graph)."""
        return await self.afunc(input, config if config is not None else ensure_config())

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None,
               **kwargs: Any) -> dict[str, Any]:
        """Run the node from a sync graph run (``invoke``/``stream``) on its worker thread's event
        loop (one per thread, reused by the nodes that run there, not one per node)."""
        return run_sync(self.afunc(input, config if config is not None else ensure_config()), reuse_loop=True)


def route_of(lane: str) -> Callable[[Mapping[str, Any]], str]:
    """Router: the route the lane's latest routing node chose."""

    def route(state: Mapping[str, Any]) -> str:
        return read_lane(state, lane).get("route", "")

    return route


def join_route(lane: str) -> Callable[[Mapping[str, Any]], str | list[str]]:
    """Router after a fan-in: on when all branches are done, else nowhere (a later branch end
    triggers the fan-in again)."""

    def route(state: Mapping[str, Any]) -> str | list[str]:
        # "wait": another branch is still running; its end triggers this fan-in again.
        return "next" if read_lane(state, lane).get("route") == "next" else []

    return route


def loop_gate(loop_id: str, count: int, lane: str, closes_lane: bool,
              ends: bool = False) -> Callable[..., dict[str, Any]]:
    """The node after a loop body: another iteration, or exit once ``count`` iterations ran (an
    early exit on a passing check happens at the loop's exit node, see :func:`loop_exit`).
    ``ends``: leaving the loop ends the run (:func:`end_run`)."""

    def gate(state: Mapping[str, Any]) -> dict[str, Any]:
        iteration = (state.get("loops") or {}).get(loop_id, 0)
        leave = iteration + 1 >= count
        update = LaneState(route="exit" if leave else "again", done=leave and closes_lane)
        # Leaving resets the counter, so the next entry (e.g. in an outer loop) starts at 0.
        out = {**write_lane(lane, update), "loops": {loop_id: 0 if leave else iteration + 1}}
        if leave and ends:
            out.update(end_run(read_lane(state, lane).get("value"), state, out))
        return out

    gate.__name__ = f"{loop_id}_loop"
    return gate


def loop_exit(loop_id: str, lane: str, closes_lane: bool, ends: bool = False) -> Callable[..., dict[str, Any]]:
    """The node after a loop's exit step: leave the loop when every checker that ran in that step
    passed (``checks[loop_id]``, and-ed by the checkers and the branch joins), else go on.
    ``ends``: leaving the loop ends the run (:func:`end_run`)."""

    def exit_node(state: Mapping[str, Any]) -> dict[str, Any]:
        flow = read_lane(state, lane)
        checks = dict(flow.get("checks") or {})
        leave = checks.pop(loop_id, None) is True  # None: no checker ran in the exit step
        update = LaneState(checks=checks, route="exit" if leave else "on", done=leave and closes_lane)
        if not leave:
            return write_lane(lane, update)
        out = {**write_lane(lane, update), "loops": {loop_id: 0}}
        return {**out, **end_run(flow.get("value"), state, out)} if ends else out

    exit_node.__name__ = f"{loop_id}_exit"
    return exit_node


def fan_out(lane: str, lanes: Sequence[str], entry: bool = False) -> Callable[..., dict[str, Any]]:
    """The node that starts every branch lane from the parent lane's flow. ``entry``: it is the
    workflow's first node, which starts the run (:func:`start_run`)."""

    def fan_out_node(state: Mapping[str, Any]) -> dict[str, Any]:
        if entry:
            _, reset = start_run(state)
            flow = LaneState()
        else:
            reset, flow = {}, read_lane(state, lane)
        start = LaneState(value=flow.get("value"), feedback=flow.get("feedback"), checks={},
                          verdict=None, route="", done=False)
        branches = {name: dict(start) for name in lanes}
        return {**reset, "lanes": Overwrite(branches) if entry else branches}

    return fan_out_node


def fan_in(lane: str, lanes: Sequence[str], closes_lane: bool, ends: bool = False) -> Callable[..., dict[str, Any]]:
    """The node that, once every branch is done, writes their outputs (branch order) to the parent.
    ``ends``: going on from it ends the run (:func:`end_run`)."""

    def fan_in_node(state: Mapping[str, Any]) -> dict[str, Any]:
        branches = [read_lane(state, name) for name in lanes]
        if not all(b.get("done") for b in branches):
            return write_lane(lane, LaneState(route="wait"))
        flow = read_lane(state, lane)
        checks = dict(flow.get("checks") or {})
        for branch in branches:  # a loop's exit step passes only when every branch's checkers passed
            for loop, passed in (branch.get("checks") or {}).items():
                checks[loop] = checks.get(loop, True) and passed
        update = LaneState(
            value=[final_answer(as_value(b.get("value"))) for b in branches],
            feedback=flow.get("feedback"),
            checks=checks,
            verdict=None,
            route="next",
            done=closes_lane,
        )
        out = write_lane(lane, update)
        return {**out, **end_run(update["value"], state, out)} if ends else out

    return fan_in_node


_CLEAN: dict[str, Any] = {"value": None, "feedback": None, "checks": {}, "verdict": None, "route": "",
                          "answer": "", "lanes": {}, "loops": {}, "outputs": {}}
"""What a run starts from, per key. A key whose channel holds nothing is left alone: writing it
would make it a channel LangGraph carries through every later step of the run."""

_REDUCED = ("lanes", "loops", "outputs")
"""Keys with a merging reducer: a reset must replace them (``Overwrite``), not merge into them."""

OUTPUT_DEFAULTS: dict[str, Any] = {key: _CLEAN[key] for key in ("feedback", "verdict", "loops")}
"""The output keys a run may never write (no checker ran, no loop): the node that ends the run
writes them, so a run's result has the same keys whatever the workflow did."""


def start_run(state: Mapping[str, Any]) -> tuple[TaskState, dict[str, Any]]:
    """What a run starts with: the task from the input and the update that gives the run a clean
    slate. What an earlier run on a checkpointed thread left (``value``, ``checks``, ``lanes``,
    ``answer``, ...) is reset, and the accumulating ``outputs``/``trace`` are overwritten; a key no
    run has written stays unwritten. The workflow's entry node applies it (its input schema,
    :class:`~flowsteer.integrations.langgraph.state.EntryView`, holds every key it may reset); a
    workflow that starts with a loop (whose first node runs again each iteration) or has no steps
    has a ``prepare`` node for it."""
    raw = state.get("task") or state.get("question")
    if not raw:
        raise UserError("the workflow graph needs an input: pass {'question': '...'} or {'task': {...}}")
    task = task_to_state(raw)
    reset: dict[str, Any] = {"task": task, "question": task["question"]}
    for key, clean in _CLEAN.items():
        if key in state and state[key] != clean:
            reset[key] = Overwrite(clean) if key in _REDUCED else clean
    reset["trace"] = Overwrite([])
    return task, reset


def end_run(value: Any, state: Mapping[str, Any], update: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The update of the node that ends a run, from what it read (``state``) and its own ``update``:
    the answer from the last value; ``outputs``, one per executed operator node, from the run's
    trace (the nodes write only their trace entries, each channel write being a cost LangGraph pays
    per node); and the :data:`OUTPUT_DEFAULTS` that neither holds. ``task`` is cleared so that a
    later run on the same checkpointed thread reads its own input."""
    update = update or {}
    own = update.get("trace", [])
    entries = own.value if isinstance(own, Overwrite) else [*(state.get("trace") or ()), *own]
    out: dict[str, Any] = {
        "answer": final_answer(as_value(value)), "task": None,
        "outputs": {output_key(e["node_id"], e["iteration"]): e["output"] for e in entries},
    }
    for key, default in OUTPUT_DEFAULTS.items():
        if key not in state and key not in update:
            out[key] = default
    return out


def prepare(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prepare`` node: :func:`start_run` on its own."""
    return start_run(state)[1]


def finalize(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``finalize`` node of a workflow without steps: :func:`end_run` on its own."""
    return end_run(state.get("value"), state)
