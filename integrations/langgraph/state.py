"""The typed state of a compiled workflow graph, its reducers, and conversions.

Everything in the state is plain data (strings, lists, dicts, numbers), so any LangGraph
checkpointer can store it without custom serialisers.

*Lanes.* A workflow is one sequential flow ("the main lane") except inside a ``Parallel``, where
each branch is its own lane running concurrently. The main lane lives in the top-level ``value``,
``feedback`` and ``checks`` keys; branch lanes live in ``lanes`` under ``"<parallel id>.<k>"``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any

# pydantic (LangGraph Platform's /schemas, Studio's input form) needs typing_extensions' TypedDict on 3.11
from typing_extensions import TypedDict

from flowsteer.errors import UserError
from flowsteer.operators.base import Value
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import NodeTrace

__all__ = [
    "MAIN_LANE",
    "WorkflowState",
    "WorkflowInput",
    "LaneState",
    "TaskState",
    "TraceEntry",
    "FlowView",
    "MainLaneView",
    "EntryView",
    "EndView",
    "RunView",
    "BranchLaneView",
    "JoinView",
    "merge_dicts",
    "merge_lanes",
    "output_key",
    "task_from_state",
    "task_of_state",
    "task_to_state",
    "trace_entry",
    "as_value",
    "task_input",
]

MAIN_LANE = "main"


def merge_dicts(left: Mapping[str, Any] | None, right: Mapping[str, Any] | None) -> dict[str, Any]:
    """Reducer: keys of ``right`` replace those of ``left`` (concurrent writers use distinct keys)."""
    return {**(left or {}), **(right or {})}


def merge_lanes(
    left: Mapping[str, LaneState] | None, right: Mapping[str, LaneState] | None
) -> dict[str, LaneState]:
    """Reducer for branch lanes: a write updates the named fields of one lane."""
    merged: dict[str, LaneState] = dict(left or {})
    for lane, update in (right or {}).items():
        merged[lane] = {**merged.get(lane, {}), **update}  # type: ignore[typeddict-item]
    return merged


class TaskState(TypedDict, total=False):
    """The task as the workflow may see it (no gold answer, no hidden tests)."""

    question: str
    kind: str
    id: str
    entry_point: str | None
    public_tests: str | None
    source: str
    meta: dict[str, Any]


class LaneState(TypedDict, total=False):
    """The flow of one parallel branch."""

    value: Any
    """The current value (``str``, a list of branch outputs, or None)."""
    feedback: str | None
    """The most recent checker feedback in this lane."""
    checks: dict[str, bool]
    """Loop id -> did the last checker executed in that loop's current iteration pass."""
    verdict: bool | None
    """Verdict of the lane's latest node (what a conditional routes on)."""
    route: str
    """The route the lane's latest routing node chose (``pass``/``fail``, ``again``/``exit``)."""
    done: bool
    """True once the branch reached its end (the fan-in waits for every branch)."""


class TraceEntry(TypedDict):
    """One operator execution, as plain data."""

    node_id: str
    operator: str
    iteration: int
    output: str
    verdict: bool | None
    feedback: str | None
    error: str | None
    cached: bool
    started: float
    """``time.perf_counter()`` when the node started (compare within one process only)."""
    ended: float
    usage: dict[str, int]


class WorkflowInput(TypedDict, total=False):
    """What a caller passes to the graph: a ``question`` or a whole ``task``."""

    question: str
    task: Any
    """A :class:`~flowsteer.tasks.Task` or a mapping of its fields."""


class WorkflowOutput(TypedDict, total=False):
    """What a run of the graph returns (its output schema): the answer and what produced it."""

    question: str
    answer: str
    """The workflow's answer."""
    outputs: dict[str, str]
    """``"node_id#iteration"`` -> output, for every executed operator node."""
    trace: list[TraceEntry]
    """Every operator execution in completion order."""
    feedback: str | None
    """The most recent checker feedback."""
    verdict: bool | None
    loops: dict[str, int]


class WorkflowState(TypedDict, total=False):
    """State of a compiled workflow graph (override with ``state_schema=`` to add your own keys)."""

    question: str
    task: TaskState
    """The task being solved (set by the run's first node; cleared by its last so that a later run on the
    same checkpointed thread reads its own input)."""
    value: Any
    """The main lane's current value; the last step's output at the end."""
    feedback: str | None
    """The main lane's most recent checker feedback."""
    checks: dict[str, bool]
    verdict: bool | None
    route: str
    lanes: Annotated[dict[str, LaneState], merge_lanes]
    """Branch lanes of running parallel blocks, keyed ``"<parallel id>.<branch index>"``."""
    loops: Annotated[dict[str, int], merge_dicts]
    """Loop id -> current (0-based) iteration of that loop."""
    outputs: Annotated[dict[str, str], merge_dicts]
    """``"node_id#iteration"`` -> output, for every executed operator node."""
    trace: Annotated[list[TraceEntry], operator.add]
    """Every operator execution in completion order."""
    answer: str
    """The workflow's answer (:func:`flowsteer.workflow.interpreter.final_answer` of the last value)."""


class FlowView(TypedDict, total=False):
    """What a plain operator node of the main lane reads (not the run's first or last node, not in a
    loop, no conditional after it): the task and the flow it continues."""

    task: TaskState
    value: Any
    feedback: str | None
    verdict: bool | None


class MainLaneView(TypedDict, total=False):
    """What a node of the main lane reads: the task and the main lane's flow (not ``outputs``,
    ``trace`` or ``answer``, which nodes only write). Each key a node reads is a channel LangGraph
    reads for it on every run, so a node declares the keys it needs (its ``input_schema``)."""

    question: str
    task: TaskState
    value: Any
    feedback: str | None
    checks: dict[str, bool]
    verdict: bool | None
    route: str
    loops: dict[str, int]


class BranchLaneView(TypedDict, total=False):
    """What a node of a parallel branch reads: the task and the branch lanes."""

    question: str
    task: TaskState
    lanes: dict[str, LaneState]
    loops: dict[str, int]


class JoinView(MainLaneView, total=False):
    """What a fan-in reads: its branches and the lane it joins them into (main or a branch)."""

    lanes: dict[str, LaneState]


class EntryView(JoinView, total=False):
    """What the node that starts a run reads: its input, and every key an earlier run on the same
    checkpointed thread may have left, so that it resets exactly those."""

    answer: str
    outputs: dict[str, str]


class EndView(JoinView, total=False):
    """What the node that ends a run reads: its lane and the run's trace, from which it writes
    ``outputs``."""

    trace: list[TraceEntry]


class RunView(EntryView, EndView, total=False):
    """What the node of a one-node workflow reads: it both starts and ends the run."""


REQUIRED_KEYS = ("task", "value", "feedback", "checks", "verdict", "route", "lanes", "loops",
                 "outputs", "trace", "answer")


def output_key(node_id: str, iteration: int) -> str:
    """The ``outputs`` key of one node execution."""
    return f"{node_id}#{iteration}"


def as_value(value: Any) -> Value:
    """Restore a value read back from a checkpoint (lists become the tuples operators expect)."""
    if isinstance(value, list):
        return tuple(value)
    return value


def task_to_state(task: Task | Mapping[str, Any] | str) -> TaskState:
    """The task fields a workflow may see, as plain data."""
    if isinstance(task, str):
        task = Task(task)
    elif isinstance(task, Mapping):
        task = task_from_state(task)
    if not isinstance(task, Task):
        raise UserError(f"the graph input 'task' must be a flowsteer Task or a mapping, got {task!r}")
    return TaskState(
        question=task.question,
        kind=task.kind,
        id=task.id,
        entry_point=task.entry_point,
        public_tests=task.public_tests,
        source=task.source,
        meta=dict(task.meta),
    )


_LAST_TASK: tuple[Any, Task] | None = None


def task_of_state(data: Mapping[str, Any]) -> Task:
    """:func:`task_from_state`, built once per run: every node of a run reads the same ``task``
    object, so the last one built is kept (with the object, so its identity cannot be reused)."""
    global _LAST_TASK
    last = _LAST_TASK  # one read: concurrent runs in threads replace the slot, never half of it
    if last is not None and last[0] is data:
        return last[1]
    task = task_from_state(data)
    _LAST_TASK = (data, task)
    return task


def task_from_state(data: Mapping[str, Any]) -> Task:
    """Rebuild a :class:`Task` from ``task`` state (unknown keys are an error that names them)."""
    allowed = set(Task.__dataclass_fields__)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"unknown task field(s) {unknown}; valid fields: {sorted(allowed)}")
    try:
        return Task(**dict(data))
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid task {dict(data)!r}: {exc}") from exc


def trace_entry(trace: NodeTrace) -> TraceEntry:
    """A :class:`NodeTrace` as plain data."""
    result = trace.result
    return TraceEntry(
        node_id=trace.node_id,
        operator=trace.operator,
        iteration=trace.iteration,
        output=result.output,
        verdict=result.verdict,
        feedback=result.feedback,
        error=result.error,
        cached=trace.cached,
        started=trace.started,
        ended=trace.ended,
        usage={
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "calls": result.usage.calls,
        },
    )


def task_input(task: Task | str) -> WorkflowInput:
    """The graph input for ``task`` as plain data (checkpointers cannot store a ``Task`` object)."""
    return WorkflowInput(task=dict(task_to_state(task)))
