"""The one interpreter that defines what a workflow means (DESIGN.md section 3).

* The task is visible to every node; each step receives the previous step's output.
* A :class:`~flowsteer.workflow.ir.Parallel` gives every branch the same input, runs the branches
  concurrently and yields the tuple of branch outputs (an ensembler reduces it).
* A :class:`~flowsteer.workflow.ir.Conditional` runs its checker; ``on_fail`` runs when the verdict is not a
  pass (a failed or undecided check), ``on_pass`` (empty = ``done``) when it passes. The checker's
  output (the checked solution, passed through) feeds the branch that runs.
* A :class:`~flowsteer.workflow.ir.Loop` runs its body up to ``max_iterations`` times. Its exit point is
  the body's last top-level step holding a checker (:func:`loop_exit_index`): right after that step,
  the loop ends when every checker that ran in it passed (all branches of a parallel), and the rest
  of that iteration is skipped, so ``(Review -> Revise) * 2`` with a passing Review never calls Revise.
* Checker feedback travels downstream with the value, so a later Revise sees the latest verdict.
* The workflow's answer is the last step's output (no operator overrides it). A workflow that ends
  in a parallel block answers with the most common branch output.

The LangGraph compiler in ``flowsteer.integrations`` reuses :func:`final_answer`,
:func:`cache_key` and the operators themselves, and is tested to give the same node outputs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowsteer.errors import OperatorError, UserError
from flowsteer.operators.base import (
    Operator,
    OperatorCall,
    OperatorContext,
    OperatorResult,
    Usage,
    Value,
)
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.tasks import Task
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Step, Workflow

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import RunnableConfig

    from flowsteer.sandbox import Sandbox

__all__ = [
    "Interpreter",
    "ExecutionResult",
    "NodeTrace",
    "NodeCache",
    "final_answer",
    "cache_key",
]


@dataclass(frozen=True)
class NodeTrace:
    """One operator execution."""

    node_id: str
    operator: str
    input: Value
    prompt: str
    result: OperatorResult
    started: float
    """``time.perf_counter()`` at start (compare within one run only)."""
    ended: float
    iteration: int = 0
    """Loop iteration (0-based) of the innermost enclosing loop; 0 outside loops."""
    cached: bool = False

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass(frozen=True)
class ExecutionResult:
    """The answer of one workflow run plus its per-node trace."""

    answer: str
    trace: tuple[NodeTrace, ...] = ()
    error: str | None = None
    """Set when the run was aborted (an operator raised); node-level errors live in the trace."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for t in self.trace:
            if not t.cached:
                total = total + t.result.usage
        return total

    @property
    def node_errors(self) -> list[NodeTrace]:
        return [t for t in self.trace if t.result.error]

    def outputs(self) -> dict[tuple[str, int], str]:
        """``(node_id, iteration) -> output`` for every executed node."""
        return {(t.node_id, t.iteration): t.result.output for t in self.trace}


def final_answer(value: Value) -> str:
    """The workflow answer for a final step value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not value:
        return ""
    counts = Counter(v.strip() for v in value)
    best = max(counts.values())
    return next(v for v in value if counts[v.strip()] == best)


def cache_key(task: Task, node: OperatorNode, value: Value, feedback: str | None) -> str:
    """Content key of one node execution: same node, operator, prompt, params, input, feedback and
    task. The node id is part of it so identical operators in parallel branches keep their own
    results (sharing one entry would make every branch repeat the last one cached)."""
    payload = json.dumps(
        [task.key, task.kind, node.id, node.operator, node.prompt, dict(node.params), value, feedback],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class NodeCache:
    """Per-episode memo of node results (the canvas keeps one so unchanged nodes are not re-run)."""

    entries: dict[str, OperatorResult] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, key: str) -> OperatorResult | None:
        result = self.entries.get(key)
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    def put(self, key: str, result: OperatorResult) -> None:
        # Results with ``error`` set are values the operator returned (a parse failure, code that
        # failed in the sandbox): re-running the same call would repeat them, so they are cached
        # too. Raised failures never reach the cache.
        self.entries[key] = result


@dataclass
class _Flow:
    value: Value
    feedback: str | None


class Interpreter:
    """Runs workflows with one executor chat model and one sandbox.

    >>> interp = Interpreter(executor=model)                     # doctest: +SKIP
    >>> result = interp.run(workflow, Task("What is 2+3?"))      # doctest: +SKIP
    """

    def __init__(
        self,
        executor: BaseChatModel,
        *,
        sandbox: Sandbox | None = None,
        registry: OperatorRegistry | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if sandbox is None:
            from flowsteer.sandbox import Sandbox

            sandbox = Sandbox()
        self.registry = registry or default_registry()
        self.context = OperatorContext(model=executor, sandbox=sandbox, options=dict(options or {}))
        self._operators: dict[str, Operator] = {}
        self._runnables: dict[str, Any] = {}

    @classmethod
    def of(cls, executor: Any, *, registry: OperatorRegistry | None = None,
           sandbox: Sandbox | None = None) -> Interpreter:
        """The interpreter an "executor" argument means: an :class:`Interpreter` as it is, a LangChain
        chat model wrapped in a new one (with ``registry`` and ``sandbox``). The one place that reads
        the argument every API taking an executor accepts; anything else is a :class:`UserError`.
        An Interpreter brings its own sandbox, so a ``sandbox`` next to one is refused."""
        if isinstance(executor, Interpreter):
            if sandbox is not None:
                raise UserError("executor is an Interpreter: give sandbox= to the Interpreter, not here")
            return executor
        from langchain_core.language_models import BaseChatModel as ChatModel

        if not isinstance(executor, ChatModel):
            raise UserError(f"executor= must be a LangChain chat model (a BaseChatModel, e.g. "
                            f"flowsteer.testing.SimulatedExecutor()) or a flowsteer Interpreter, got "
                            f"{type(executor).__name__}")
        return cls(executor, sandbox=sandbox, registry=registry)

    def operator(self, name: str) -> Operator:
        """The executable operator for ``name`` (built once per interpreter)."""
        op = self._operators.get(name)
        if op is None:
            op = self.registry.get(name).factory(self.context)
            self._operators[name] = op
        return op

    def _runnable(self, name: str) -> Any:
        """The operator's LangChain runnable (built once per interpreter, like the operator)."""
        runnable = self._runnables.get(name)
        if runnable is None:
            runnable = self._runnables[name] = self.operator(name).as_runnable()
        return runnable

    # -- public API --------------------------------------------------------------------------
    def run(self, workflow: Workflow, task: Task, *, cache: NodeCache | None = None,
            config: RunnableConfig | None = None) -> ExecutionResult:
        """Synchronous :meth:`arun` (also callable while an event loop runs in this thread);
        ``config`` (callbacks, tags, ...) reaches every node and model call, as in :meth:`arun`."""
        from flowsteer.sync import run_sync

        return run_sync(self.arun(workflow, task, cache=cache, config=config))

    async def arun(
        self,
        workflow: Workflow,
        task: Task,
        *,
        cache: NodeCache | None = None,
        config: RunnableConfig | None = None,
    ) -> ExecutionResult:
        """Run ``workflow`` on ``task``. An invalid workflow (see :func:`flowsteer.validate`, with the
        task's kind) raises :class:`~flowsteer.errors.WorkflowValidationError` with the same
        violations, before any call."""
        from flowsteer.errors import WorkflowValidationError
        from flowsteer.workflow.validation import validate

        violations = validate(workflow, self.registry, kind=task.kind)
        if violations:
            raise WorkflowValidationError(violations)
        trace: list[NodeTrace] = []
        start = time.perf_counter()
        try:
            flow = await self._chain(workflow.steps, _Flow(None, None), task, trace, cache, config, 0)
        except OperatorError as exc:
            trace.sort(key=lambda t: t.started)
            return ExecutionResult("", tuple(trace), str(exc), time.perf_counter() - start)
        trace.sort(key=lambda t: t.started)
        return ExecutionResult(final_answer(flow.value), tuple(trace), None, time.perf_counter() - start)

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
    ) -> NodeTrace:
        """Execute one operator node (shared with the LangGraph compiler).

        ``own_run=False`` runs the operator inside the caller's run instead of opening a named run
        of its own: a compiled graph's node already is one (LangGraph names it ``node_3_Verify``),
        so its model calls nest there directly, as in a hand-written graph."""
        key = cache_key(task, node, value, feedback) if cache is not None else ""
        started = time.perf_counter()
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            return NodeTrace(node.id, node.operator, value, node.prompt, cached, started, started,
                             iteration, cached=True)
        call = OperatorCall(task=task, input=value, prompt=node.prompt, feedback=feedback,
                            params=node.params, node_id=node.id)
        # Through the operator's runnable: each node is a named run that nests its model calls
        # (LangSmith-style tracing); the caller's run id/name must not be reused per node.
        # Without: the caller's config, its callbacks included, goes to the operator as it is.
        try:
            if own_run:
                node_config: dict[str, Any] = {k: v for k, v in (config or {}).items()
                                               if k not in ("run_id", "run_name")}
                node_config["run_name"] = f"{node.operator} {node.id}".strip()
                result = await self._runnable(node.operator).ainvoke(call, node_config)
            else:
                result = await self.operator(node.operator).arun(call, config)
        except OperatorError:
            raise
        except Exception as exc:  # a model/backend failure: abort the run, blame the node
            raise OperatorError(node.id, node.operator, f"{type(exc).__name__}: {exc}") from exc
        if cache is not None:
            cache.put(key, result)
        return NodeTrace(node.id, node.operator, value, node.prompt, result, started,
                         time.perf_counter(), iteration)

    # -- the semantics -------------------------------------------------------------------------
    async def _chain(self, chain: Chain, flow: _Flow, task: Task, trace: list[NodeTrace],
                     cache: NodeCache | None, config: RunnableConfig | None, iteration: int) -> _Flow:
        for step in chain:
            flow = await self._step(step, flow, task, trace, cache, config, iteration)
        return flow

    async def _step(self, step: Step, flow: _Flow, task: Task, trace: list[NodeTrace],
                    cache: NodeCache | None, config: RunnableConfig | None, iteration: int) -> _Flow:
        match step:
            case OperatorNode():
                t = await self.run_node(step, task, flow.value, flow.feedback, cache=cache,
                                        config=config, iteration=iteration)
                trace.append(t)
                return _advance(flow, t.result)
            case Parallel(branches=branches):
                # One trace per branch, joined in branch order: "the last checker of an iteration"
                # must not depend on which concurrent branch happened to finish last.
                lanes: list[list[NodeTrace]] = [[] for _ in branches]
                try:
                    outs = await asyncio.gather(*(
                        self._chain(b, flow, task, lane, cache, config, iteration)
                        for b, lane in zip(branches, lanes, strict=True)
                    ))
                finally:
                    for lane in lanes:
                        trace.extend(lane)
                return _Flow(tuple(final_answer(o.value) for o in outs), flow.feedback)
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                t = await self.run_node(check, task, flow.value, flow.feedback, cache=cache,
                                        config=config, iteration=iteration)
                trace.append(t)
                after = _advance(flow, t.result)
                branch = on_pass if t.result.verdict is True else on_fail
                return await self._chain(branch, after, task, trace, cache, config, iteration)
            case Loop(body=body, max_iterations=count):
                exit_at = loop_exit_index(body, self.registry)
                for i in range(count):
                    # A private trace per iteration: concurrent branches share ``trace``.
                    local: list[NodeTrace] = []
                    leave = False
                    for j, inner in enumerate(body):
                        mark = len(local)
                        flow = await self._step(inner, flow, task, local, cache, config, i)
                        if j == exit_at and checks_passed(local[mark:], self.registry):
                            leave = True  # the rest of this iteration is skipped
                            break
                    trace.extend(local)
                    if leave:
                        break
                return flow
        raise TypeError(f"not a workflow step: {step!r}")


def _advance(flow: _Flow, result: OperatorResult) -> _Flow:
    feedback = result.feedback if result.verdict is not None else flow.feedback
    return _Flow(result.output, feedback)


def _holds_checker(step: Step, registry: OperatorRegistry) -> bool:
    from flowsteer.workflow.ir import iter_steps

    for ref in iter_steps((step,)):
        if isinstance(ref.node, OperatorNode):
            spec = registry.lookup_case_insensitive(ref.node.operator)
            if spec is not None and spec.is_checker:
                return True
    return False


def loop_exit_index(body: Chain, registry: OperatorRegistry) -> int | None:
    """Where a loop may end early: the index of the body's last top-level step that holds a
    checker (a checker node, or a parallel / conditional / loop with one inside); None when the
    body holds none (the loop then runs all its iterations)."""
    found = None
    for i, step in enumerate(body):
        if _holds_checker(step, registry):
            found = i
    return found


def checks_passed(step_trace: list[NodeTrace], registry: OperatorRegistry) -> bool:
    """Loop exit test after the exit step: at least one checker ran in it, and every checker that
    ran in it (all branches of a parallel, every inner iteration) passed."""
    verdicts = []
    for t in step_trace:
        spec = registry.lookup_case_insensitive(t.operator)
        if spec is not None and spec.is_checker:
            verdicts.append(t.result.verdict is True)
    return bool(verdicts) and all(verdicts)
