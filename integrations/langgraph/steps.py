"""The nodes and routers a compiled workflow graph is made of, as public factories.

:func:`~flowsteer.integrations.langgraph.compile_workflow` builds its ``StateGraph`` from these, and
``flowsteer export --to langgraph-py`` writes a module that calls them itself (``add_node``,
``add_edge``, ``add_conditional_edges``), so an exported graph reads and edits like hand-written
LangGraph. ``lane`` is the state lane a node reads and writes (``"main"``, or
``"<parallel id>.<branch>"`` inside a parallel block); ``closes_lane`` says the node ends its
branch; ``loops`` are the enclosing loop ids (outermost first) and ``exits`` the loops whose exit
step holds the node.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Overwrite

from flowsteer.workflow.interpreter import NodeCache
from flowsteer.workflow.ir import OperatorNode

from ._nodes import (
    AsyncNode,
    InlineNode,
    end_run,
    fan_in,
    fan_out,
    finalize,
    join_route,
    loop_exit,
    loop_gate,
    prepare,
    read_lane,
    route_of,
    start_run,
)
from .state import (
    MAIN_LANE,
    BranchLaneView,
    EndView,
    EntryView,
    FlowView,
    JoinView,
    MainLaneView,
    RunView,
    as_value,
    task_of_state,
    trace_entry,
)

__all__ = ["prepare_node", "finalize_node", "operator_node", "loop_gate_node", "loop_exit_node", "fan_out_node",
           "fan_in_node", "route", "join", "node_input", "MAIN_LANE", "FlowView", "MainLaneView", "EntryView",
           "EndView", "RunView", "BranchLaneView", "JoinView"]


def node_input(factory: str, lane: str = MAIN_LANE, *, entry: bool = False, ends: bool = False,
               loops: Sequence[str] = (), routes: bool | None = None, **_: Any) -> type:
    """The ``input_schema`` of a node made by ``factory`` (with the same keyword arguments): the
    state keys it reads (and its routers read). LangGraph reads every key of a node's input schema
    for each run of it, so a node that declares the few it needs costs less than one handed the
    whole state: a plain operator node of the main lane reads :class:`FlowView`; the node that
    starts the run, :class:`EntryView` (what it may reset); the node that ends it,
    :class:`EndView` (the trace it derives ``outputs`` from); a one-node workflow's, :class:`RunView`."""
    entry = entry or factory == "prepare_node"
    ends = ends or factory == "finalize_node"
    if entry or ends:
        return RunView if entry and ends else EntryView if entry else EndView
    if factory == "fan_in_node":
        return JoinView
    if lane != MAIN_LANE:
        return BranchLaneView
    if factory == "operator_node" and not loops and routes is None:
        return FlowView
    return MainLaneView


def prepare_node() -> InlineNode:
    """The node that starts a run where the first step's node cannot (a workflow that starts with a
    loop, or has no steps): the task from the input, a clean slate for the run."""
    return InlineNode("prepare", prepare)


def finalize_node() -> InlineNode:
    """The last node of a workflow without steps: writes ``answer`` (elsewhere the node that ends the
    run does)."""
    return InlineNode("finalize", finalize)


def operator_node(runner: Any, node: OperatorNode, *, lane: str = MAIN_LANE, loops: Sequence[str] = (),
                  exits: Sequence[str] = (), closes_lane: bool = False, routes: bool | None = None,
                  entry: bool = False, ends: bool = False, cache: NodeCache | None = None) -> AsyncNode:
    """One operator run through ``runner.run_node`` (an :class:`~flowsteer.workflow.interpreter.Interpreter`:
    the interpreter's operators, cache key and semantics). ``routes`` is None for a plain node; for
    a conditional's checker it says whether its pass route goes straight on (an empty ``on_pass``).
    ``entry``: the workflow's first node, which starts the run from the input (``start_run``);
    ``ends``: going straight on from it ends the run and writes the answer (``end_run``)."""
    spec = runner.registry.lookup_case_insensitive(node.operator)
    is_checker = spec is not None and spec.is_checker
    loops, exits = tuple(loops), tuple(exits)
    # the node is the operator's run (LangGraph names it): no second, nested run per node; a runner
    # written before ``own_run`` existed keeps its own behaviour
    options = {"own_run": False} if "own_run" in inspect.signature(runner.run_node).parameters else {}

    main = lane == MAIN_LANE
    ending = ends and routes is not False  # a checker whose pass route goes elsewhere never ends the run

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if entry:
            task, reset = start_run(state)
            flow: Mapping[str, Any] = {}
        else:
            # the main lane's flow is the top-level keys themselves (see read_lane)
            task, reset = state["task"], None
            flow = state if main else read_lane(state, lane)
        iteration = (state.get("loops") or {}).get(loops[-1], 0) if loops else 0
        trace = await runner.run_node(
            node, task_of_state(task), as_value(flow.get("value")), flow.get("feedback"),
            cache=cache, config=config, iteration=iteration, **options,
        )
        result = trace.result
        verdict = result.verdict
        # only what the node changes is written (each written key is a channel update)
        update: dict[str, Any] = {"value": result.output}
        if verdict is not None or flow.get("verdict") is not None:  # else it stays None
            update["verdict"] = verdict
        if verdict is not None:
            update["feedback"] = result.feedback
        if is_checker and exits:  # every checker of a loop's exit step must pass for the loop to end
            checks = dict(flow.get("checks") or {})
            checks.update({loop: checks.get(loop, True) and verdict is True for loop in exits})
            update["checks"] = checks
        if routes is not None:
            update["route"] = "pass" if verdict is True else "fail"
        if main:
            out = update
        else:
            update["done"] = closes_lane and (routes is None or (routes and verdict is True))
            out = {"lanes": {lane: update}}
        # ``outputs`` is written once, by the node that ends the run (from the trace): each written
        # key is a channel update LangGraph pays for on every node
        entries = [trace_entry(trace)]
        if reset is None:
            out["trace"] = entries
        else:
            out = {**reset, **out, "trace": Overwrite(entries)}
        if ending and (routes is None or verdict is True):
            out.update(end_run(result.output, state, out))
        return out

    return AsyncNode(f"{node.id}_{node.operator}", arun)


def loop_gate_node(loop_id: str, count: int, *, lane: str = MAIN_LANE, closes_lane: bool = False,
                   ends: bool = False) -> InlineNode:
    """``<loop>_loop``: another iteration (route ``again``) or, after ``count``, ``exit`` (which ends
    the run when ``ends``)."""
    return InlineNode(f"{loop_id}_loop", loop_gate(loop_id, count, lane, closes_lane, ends))


def loop_exit_node(loop_id: str, *, lane: str = MAIN_LANE, closes_lane: bool = False,
                   ends: bool = False) -> InlineNode:
    """``<loop>_exit``: route ``exit`` when every checker of the loop's exit step passed, else ``on``."""
    return InlineNode(f"{loop_id}_exit", loop_exit(loop_id, lane, closes_lane, ends))


def fan_out_node(parallel_id: str, lanes: Sequence[str], *, lane: str = MAIN_LANE,
                 entry: bool = False) -> InlineNode:
    """``<parallel>_fanout``: every branch lane starts from the parent lane's flow (``entry``: the
    workflow's first node, which starts the run)."""
    return InlineNode(f"{parallel_id}_fanout", fan_out(lane, list(lanes), entry))


def fan_in_node(parallel_id: str, lanes: Sequence[str], *, lane: str = MAIN_LANE,
                closes_lane: bool = False, ends: bool = False) -> InlineNode:
    """``<parallel>_fanin``: once every branch is done, their outputs (branch order) go on (and
    end the run when ``ends``)."""
    return InlineNode(f"{parallel_id}_fanin", fan_in(lane, list(lanes), closes_lane, ends))


def route(lane: str = MAIN_LANE) -> InlineNode:
    """The router of a conditional edge: the route the lane's last routing node chose."""
    return InlineNode("route", route_of(lane))


def join(lane: str = MAIN_LANE) -> InlineNode:
    """The router after a fan-in: ``next`` once all branches are done, else nowhere (wait)."""
    return InlineNode("route", join_route(lane))
