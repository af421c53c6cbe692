"""Compile a :class:`~flowsteer.workflow.ir.Workflow` into a LangGraph ``StateGraph``.

The graph has the semantics of :mod:`flowsteer.workflow.interpreter` (its docstring is the reference): every
operator node runs through :meth:`Interpreter.run_node`, with the same operator objects and the same
cache key, and the control structures map onto LangGraph constructs:

* an operator node becomes a graph node named ``"<id>_<Operator>"`` (e.g. ``node_3_Verify``);
* a ``Parallel`` becomes ``<id>_fanout`` -> one lane per branch, whose first nodes run in the same
  superstep (concurrently) -> ``<id>_fanin``, which waits until every branch reached its end and then
  yields the branch outputs in branch order;
* a ``Conditional`` becomes conditional edges out of its checker node, routed by the verdict
  (``fail`` whenever the verdict is not True; an empty ``on_pass`` goes straight on);
* a ``Loop`` becomes a cycle through ``<id>_loop``, which leaves after ``max_iterations``; when the
  body holds a checker, ``<id>_exit`` follows its exit step (:func:`~flowsteer.workflow.interpreter.loop_exit_index`)
  and leaves at once when every checker that ran in that step passed (branch lanes are joined with
  a logical and), skipping the rest of the iteration.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, get_type_hints

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, TimeoutPolicy

from flowsteer.errors import UserError, WorkflowValidationError
from flowsteer.operators.base import Value
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import Interpreter, NodeCache, NodeTrace, loop_exit_index
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Step, Workflow
from flowsteer.workflow.validation import validate

from . import steps
from .state import (
    MAIN_LANE,
    REQUIRED_KEYS,
    WorkflowInput,
    WorkflowOutput,
    WorkflowState,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.graph.state import CompiledStateGraph

    from flowsteer.sandbox import Sandbox

__all__ = [
    "build_state_graph",
    "compile_workflow",
    "build_graph_with_runner",
    "node_name",
    "NodeRunner",
    "PREPARE_NODE",
    "FINALIZE_NODE",
]

PREPARE_NODE = "prepare"
"""The node that starts a run (the task from the input, a clean slate) where the first step's node
cannot: a workflow that starts with a loop, or has no steps."""
FINALIZE_NODE = "finalize"
"""The node that writes ``answer`` in a workflow without steps (elsewhere the last node does)."""


class NodeRunner(Protocol):
    """What compiled nodes execute through (an :class:`Interpreter` is one)."""

    registry: OperatorRegistry

    async def run_node(
        self,
        node: OperatorNode,
        task: Task,
        value: Value,
        feedback: str | None,
        *,
        cache: NodeCache | None = None,
        config: RunnableConfig | None = None,
        iteration: int = 0,
        own_run: bool = True,
    ) -> NodeTrace: ...


@dataclass(frozen=True)
class _Target:
    """Where a step continues: a node name, and whether reaching it ends the current branch."""

    node: str
    closes_lane: bool = False


@dataclass(frozen=True)
class _Scope:
    """Static context of a step: its lane and the ids of its enclosing loops (outermost first)."""

    lane: str = MAIN_LANE
    loops: tuple[str, ...] = ()
    exits: tuple[str, ...] = ()
    """Loops whose exit step holds this node: its checker verdicts decide whether they end."""


class GraphSink(Protocol):
    """Where :class:`_GraphCompiler` puts the graph: a ``StateGraph`` (:class:`_BuildSink`) or the
    source text of an exported module (``export``). ``factory`` names a function of
    :mod:`~flowsteer.integrations.langgraph.steps`; ``router`` is ``"route"`` or ``"join"``."""

    def node(self, name: str, factory: str, **kwargs: Any) -> None: ...

    def edge(self, start: str, end: str) -> None: ...

    def branch(self, start: str, router: str, lane: str, mapping: Mapping[str, str]) -> None: ...


class _BuildSink:
    """Adds the nodes and edges to a ``StateGraph``, operator nodes running on ``runner``."""

    def __init__(self, graph: StateGraph, runner: NodeRunner, *, cache: NodeCache | None,
                 node_options: Mapping[str, Any]) -> None:
        self.graph, self.runner, self.cache, self.node_options = graph, runner, cache, dict(node_options)

    def node(self, name: str, factory: str, **kwargs: Any) -> None:
        schema = steps.node_input(factory, **kwargs)
        if factory == "operator_node":
            self.graph.add_node(name, steps.operator_node(self.runner, cache=self.cache, **kwargs),
                                input_schema=schema, **self.node_options)
        else:
            self.graph.add_node(name, getattr(steps, factory)(**kwargs), input_schema=schema)

    def edge(self, start: str, end: str) -> None:
        self.graph.add_edge(start, end)

    def branch(self, start: str, router: str, lane: str, mapping: Mapping[str, str]) -> None:
        targets: dict[Hashable, str] = {k: v for k, v in mapping.items()}
        self.graph.add_conditional_edges(start, getattr(steps, router)(lane), targets)


class _GraphCompiler:
    """Lays out the nodes and edges of one workflow into a :class:`GraphSink`."""

    def __init__(self, sink: GraphSink, registry: OperatorRegistry) -> None:
        self.sink = sink
        self.registry = registry
        self.entry: str | None = None
        """The node that starts the run (None: a ``prepare`` node does)."""

    # -- structure -------------------------------------------------------------------------
    def chain(self, chain: Chain, scope: _Scope, cont: _Target) -> str:
        """Add ``chain`` (nodes in execution order); return its entry node. ``cont`` is where the
        chain's end continues."""
        entries = [node_name(step) for step in chain]
        for i, step in enumerate(chain):
            self.step(step, scope, _Target(entries[i + 1]) if i + 1 < len(chain) else cont)
        return entries[0] if entries else cont.node

    def step(self, step: Step, scope: _Scope, cont: _Target) -> None:
        match step:
            case OperatorNode():
                name = self.operator_node(step, scope, cont, routes=None)
                self.sink.edge(name, cont.node)
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                name = self.operator_node(check, scope, cont, routes=not on_pass)
                fail_entry = self.chain(on_fail, scope, cont)
                pass_entry = self.chain(on_pass, scope, cont) if on_pass else cont.node
                self.sink.branch(name, "route", scope.lane, {"pass": pass_entry, "fail": fail_entry})
            case Loop(body=body, max_iterations=count):
                gate = f"{step.id}_loop"
                inner = _Scope(scope.lane, (*scope.loops, step.id), scope.exits)
                exit_at = loop_exit_index(body, self.registry)
                if exit_at is None:
                    body_entry = self.chain(body, inner, _Target(gate))
                else:  # body[:exit_at] -> exit step -> <id>_exit (leave, or go on) -> rest -> gate
                    exit_node = f"{step.id}_exit"
                    rest = self.chain(body[exit_at + 1:], inner, _Target(gate))
                    head = [node_name(s) for s in body[: exit_at + 1]]
                    for i, s in enumerate(body[:exit_at]):
                        self.step(s, inner, _Target(head[i + 1]))
                    self.step(body[exit_at], _Scope(inner.lane, inner.loops, (*inner.exits, step.id)),
                              _Target(exit_node))
                    body_entry = head[0]
                    self.sink.node(exit_node, "loop_exit_node", loop_id=step.id, lane=scope.lane,
                                   closes_lane=cont.closes_lane, **_ends(cont))
                    self.sink.branch(exit_node, "route", scope.lane, {"exit": cont.node, "on": rest})
                self.sink.node(gate, "loop_gate_node", loop_id=step.id, count=count, lane=scope.lane,
                               closes_lane=cont.closes_lane, **_ends(cont))
                self.sink.branch(gate, "route", scope.lane, {"again": body_entry, "exit": cont.node})
            case Parallel(branches=branches):
                self.parallel(step, branches, scope, cont)
            case _:
                raise UserError(f"{step!r} is not a workflow step (OperatorNode, Parallel, Conditional or Loop)")

    def parallel(self, step: Parallel, branches: tuple[Chain, ...], scope: _Scope, cont: _Target) -> None:
        fanout, fanin = f"{step.id}_fanout", f"{step.id}_fanin"
        lanes = [f"{step.id}.{k}" for k in range(len(branches))]
        self.sink.node(fanout, "fan_out_node", parallel_id=step.id, lanes=lanes, lane=scope.lane,
                       **self._entry(fanout))
        for lane, branch in zip(lanes, branches, strict=True):
            entry = self.chain(branch, _Scope(lane, scope.loops, scope.exits), _Target(fanin, closes_lane=True))
            self.sink.edge(fanout, entry)
        self.sink.node(fanin, "fan_in_node", parallel_id=step.id, lanes=lanes, lane=scope.lane,
                       closes_lane=cont.closes_lane, **_ends(cont))
        self.sink.branch(fanin, "join", scope.lane, {"next": cont.node})

    def operator_node(self, node: OperatorNode, scope: _Scope, cont: _Target, *, routes: bool | None) -> str:
        """Add one operator node. ``routes`` is None for a plain node; for a conditional's checker it
        says whether the pass route goes straight to ``cont`` (an empty ``on_pass``)."""
        name = node_name(node)
        self.sink.node(name, "operator_node", node=node, lane=scope.lane, loops=scope.loops, exits=scope.exits,
                       closes_lane=cont.closes_lane, routes=routes, **self._entry(name), **_ends(cont))
        return name

    def _entry(self, name: str) -> dict[str, bool]:
        return {"entry": True} if name == self.entry else {}

    def workflow(self, workflow: Workflow) -> None:
        """The whole graph: the workflow's steps from START to END. The first node starts the run
        (the task from the input, a clean slate) and the nodes that can be last write the answer
        when the run ends there, so a run costs no superstep beyond its steps. A workflow that
        starts with a loop (its first node runs again every iteration) gets a ``prepare`` node;
        one without steps is ``prepare -> finalize``."""
        if not workflow.steps:
            self.sink.node(PREPARE_NODE, "prepare_node")
            self.sink.node(FINALIZE_NODE, "finalize_node")
            self.sink.edge(START, PREPARE_NODE)
            self.sink.edge(PREPARE_NODE, FINALIZE_NODE)
            self.sink.edge(FINALIZE_NODE, END)
            return
        first = node_name(workflow.steps[0])
        if isinstance(workflow.steps[0], Loop):
            self.sink.node(PREPARE_NODE, "prepare_node")
            self.sink.edge(START, PREPARE_NODE)
            self.sink.edge(PREPARE_NODE, first)
        else:
            self.entry = first
            self.sink.edge(START, first)
        self.chain(workflow.steps, _Scope(), _Target(END))


def _ends(cont: _Target) -> dict[str, bool]:
    """``ends=True`` for a node whose continuation is the end of the graph."""
    return {"ends": True} if cont.node == END else {}


def node_name(step: Step) -> str:
    """The graph node a step starts at (``node_3_Verify``, ``node_2_fanout``, a loop's first node)."""
    match step:
        case OperatorNode():
            return f"{step.id}_{step.operator}"
        case Conditional(check=check):
            return node_name(check)
        case Parallel():
            return f"{step.id}_fanout"
        case Loop(body=body) if body:
            return node_name(body[0])
    raise UserError(f"{step!r} has no entry node: is it a valid, non-empty workflow step?")


def _check_schema(schema: type) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in get_type_hints(schema, include_extras=True)]
    if missing:
        raise UserError(
            f"state_schema {schema.__name__} lacks the keys {missing}; subclass "
            "flowsteer.integrations.WorkflowState to add your own keys"
        )


def _check_workflow(workflow: Workflow, registry: OperatorRegistry) -> None:
    violations = validate(workflow, registry)
    if violations:
        raise WorkflowValidationError(violations)
    blank = [ref.node for ref in workflow.walk() if not ref.node.id]
    if blank:
        raise UserError(
            f"{len(blank)} step(s) have no id (e.g. {blank[0]!r}); build workflows with "
            "WorkflowBuilder, flowsteer.workflow.dsl.parse or flowsteer.workflow.serialize.from_json so ids are assigned"
        )


def _make_runner(executor: Any, sandbox: Sandbox | None, registry: OperatorRegistry | None) -> NodeRunner:
    if isinstance(executor, Interpreter) and registry is not None:
        raise UserError("executor is an Interpreter: give sandbox= and registry= to the Interpreter, "
                        "not to build_state_graph")
    if executor is None:
        raise UserError("executor= is required: pass a LangChain chat model (e.g. "
                        "flowsteer.testing.SimulatedExecutor()) or an Interpreter")
    return Interpreter.of(executor, registry=registry, sandbox=sandbox)


def build_graph_with_runner(
    workflow: Workflow,
    runner: NodeRunner,
    *,
    state_schema: type | None = None,
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
    node_timeout: float | timedelta | TimeoutPolicy | None = None,
    cache: NodeCache | None = None,
) -> StateGraph:
    """:func:`build_state_graph` over any :class:`NodeRunner` (used for drawing without a model)."""
    schema = state_schema or WorkflowState
    _check_schema(schema)
    _check_workflow(workflow, runner.registry)
    # A user schema is also the input schema, so its own keys can be passed in.
    graph: StateGraph = StateGraph(schema, input_schema=schema if state_schema else WorkflowInput,
                                   output_schema=schema if state_schema else WorkflowOutput)
    options: dict[str, Any] = {}
    if retry_policy is not None:
        options["retry_policy"] = retry_policy
    if node_timeout is not None:
        options["timeout"] = node_timeout
    _GraphCompiler(_BuildSink(graph, runner, cache=cache, node_options=options), runner.registry).workflow(workflow)
    return graph


def build_state_graph(
    workflow: Workflow,
    *,
    executor: BaseChatModel | Interpreter,
    sandbox: Sandbox | None = None,
    registry: OperatorRegistry | None = None,
    state_schema: type | None = None,
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
    node_timeout: float | timedelta | TimeoutPolicy | None = None,
    cache: NodeCache | None = None,
) -> StateGraph:
    """Build (do not compile) the LangGraph ``StateGraph`` of ``workflow``.

    Args:
        workflow: a valid workflow with ids (from ``WorkflowBuilder``, the DSL or JSON).
        executor: the chat model operators call, or a ready :class:`Interpreter`.
        sandbox: code sandbox for Programmer/Test (default: a new ``Sandbox()``).
        registry: operator registry (default: the process-wide one).
        state_schema: a subclass of :class:`WorkflowState` with extra keys of your own.
        retry_policy: LangGraph retry policy applied to every operator node.
        node_timeout: per-attempt timeout of operator nodes; LangGraph enforces it for async runs
            only (``ainvoke``/``astream``), and refuses sync ``invoke`` on a graph that has one.
        cache: a :class:`NodeCache` shared across runs (same key as the core interpreter).

    Invoke the compiled graph with ``{"question": "..."}`` or ``task_input(task)``; the result holds
    ``answer``, ``outputs`` (``"node_id#iteration" -> output``) and ``trace``. In
    ``stream_mode="updates"`` every node reports its own update (an operator node: its ``trace``
    entry); the run's first node resets what an earlier run on the thread left, the accumulating
    keys with ``langgraph.types.Overwrite`` values (``update["trace"].value``), and the node that ends
    the run writes ``answer`` and ``outputs`` (derived from the trace: mid-run, read ``trace``).
    """
    runner = _make_runner(executor, sandbox, registry)
    return build_graph_with_runner(workflow, runner, state_schema=state_schema, retry_policy=retry_policy,
                                   node_timeout=node_timeout, cache=cache)


SYNC_MIN_CONCURRENCY = 16
"""Least thread-pool size of a compiled graph's sync ``invoke``."""


def compile_workflow(
    workflow: Workflow,
    *,
    executor: BaseChatModel | Interpreter,
    checkpointer: Any = None,
    interrupt_before: Sequence[str] | None = None,
    interrupt_after: Sequence[str] | None = None,
    name: str | None = None,
    **options: Any,
) -> CompiledStateGraph:
    """Build and compile ``workflow``; ``options`` are those of :func:`build_state_graph`."""
    graph = build_state_graph(workflow, executor=executor, **options)
    compiled = graph.compile(
        checkpointer=checkpointer,
        interrupt_before=list(interrupt_before) if interrupt_before else None,
        interrupt_after=list(interrupt_after) if interrupt_after else None,
        name=name or "flowsteer_workflow",
    )
    # Sync invoke runs nodes on a thread pool sized by max_concurrency, which defaults to Python's
    # min(32, cpus + 4): 6 threads on two cores, so an 8-way parallel would run in two waves. Room
    # for every operator at once makes sync as parallel as ainvoke (a caller's config still wins).
    return compiled.with_config(max_concurrency=max(SYNC_MIN_CONCURRENCY, len(workflow.operator_nodes())))
