"""Workflow validation: every violation at once, each with the fix."""

from __future__ import annotations

from dataclasses import dataclass

from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.workflow.ir import (
    MAX_LOOP_ITERATIONS,
    MIN_LOOP_ITERATIONS,
    Chain,
    Conditional,
    Loop,
    OperatorNode,
    Parallel,
    Workflow,
)

__all__ = ["Violation", "validate"]


@dataclass(frozen=True)
class Violation:
    """One problem in a workflow."""

    code: str
    """Machine-readable kind, e.g. ``"unknown_operator"``."""
    message: str
    """What is wrong and how to fix it."""
    node_id: str = ""

    def __str__(self) -> str:
        where = f"{self.node_id}: " if self.node_id else ""
        return f"{where}{self.message}"


def validate(workflow: Workflow | Chain, registry: OperatorRegistry | None = None, *,
             kind: str | None = None) -> list[Violation]:
    """Check structure and vocabulary; return all violations (empty list = valid).

    With the task ``kind`` (``"math"``, ``"code"``, ...), an operator that has nothing to do on
    that kind (:attr:`~flowsteer.operators.OperatorSpec.task_kinds`, e.g. ``Test`` outside code
    tasks) is a ``wrong_task_kind`` violation. An empty workflow is valid (the canvas starts
    empty); finish constraints are the canvas's job.
    """
    registry = registry or default_registry()
    steps = workflow.steps if isinstance(workflow, Workflow) else workflow
    out: list[Violation] = []
    _check_chain(steps, registry, out, inside_parallel=False, after_parallel=False)
    if kind is not None:
        _check_kinds(workflow if isinstance(workflow, Workflow) else Workflow(steps), registry, kind, out)
    seen: dict[str, int] = {}
    wf = workflow if isinstance(workflow, Workflow) else Workflow(steps)
    # getattr: a non-step value (already reported as not_a_step) has no id
    for node_id in (getattr(ref.node, "id", "") for ref in wf.walk()):
        if node_id:
            seen[node_id] = seen.get(node_id, 0) + 1
    for node_id, count in seen.items():
        if count > 1:
            out.append(Violation("duplicate_id", f"id {node_id!r} is used {count} times; "
                                 "build workflows with WorkflowBuilder so ids stay unique", node_id))
    return out


def _check_chain(
    chain: Chain,
    registry: OperatorRegistry,
    out: list[Violation],
    *,
    inside_parallel: bool,
    after_parallel: bool,
) -> None:
    previous_is_parallel = after_parallel
    for step in chain:
        match step:
            case OperatorNode():
                _check_operator(step, registry, out)
                spec = registry.lookup_case_insensitive(step.operator)
                if spec is not None and spec.is_ensembler and inside_parallel and not previous_is_parallel:
                    out.append(Violation(
                        "ensembler_in_parallel",
                        f"{step.operator} cannot be inside a parallel branch: it reduces the branch "
                        "outputs, so place it right after the parallel block",
                        step.id,
                    ))
            case Parallel(branches=branches):
                if len(branches) < 2:
                    out.append(Violation(
                        "parallel_too_small",
                        f"a parallel block needs at least 2 branches, got {len(branches)}; add a branch "
                        "or use a single operator instead",
                        step.id,
                    ))
                for branch in branches:
                    if not branch:
                        out.append(Violation("empty_branch", "a parallel branch is empty; give every "
                                             "branch at least one operator", step.id))
                    _check_chain(branch, registry, out, inside_parallel=True, after_parallel=False)
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                _check_operator(check, registry, out)
                spec = registry.lookup_case_insensitive(check.operator)
                if spec is not None and not spec.is_checker:
                    checkers = ", ".join(s.name for s in registry if s.is_checker)
                    out.append(Violation(
                        "condition_not_checker",
                        f"{check.operator} cannot be a condition: it gives no pass/fail verdict; "
                        f"use a checker ({checkers})",
                        step.id,
                    ))
                if not on_fail:
                    out.append(Violation("empty_on_fail", "a conditional needs a chain to run when the "
                                         "check fails (e.g. 'Verify ? Revise : done')", step.id))
                _check_chain(on_fail, registry, out, inside_parallel=inside_parallel, after_parallel=False)
                _check_chain(on_pass, registry, out, inside_parallel=inside_parallel, after_parallel=False)
            case Loop(body=body, max_iterations=count):
                if not body:
                    out.append(Violation("empty_loop", "a loop body is empty; give it at least one "
                                         "operator, e.g. '(Review -> Revise) * 3'", step.id))
                if (
                    not isinstance(count, int)
                    or isinstance(count, bool)
                    or not MIN_LOOP_ITERATIONS <= count <= MAX_LOOP_ITERATIONS
                ):
                    out.append(Violation(
                        "loop_count",
                        f"loop count {count} is out of range; use {MIN_LOOP_ITERATIONS}.."
                        f"{MAX_LOOP_ITERATIONS}",
                        step.id,
                    ))
                _check_chain(body, registry, out, inside_parallel=inside_parallel, after_parallel=False)
            case _:
                out.append(Violation("not_a_step", f"{step!r} is not a workflow step (OperatorNode, "
                                     "Parallel, Conditional or Loop)"))
        previous_is_parallel = isinstance(step, Parallel)


def _check_kinds(workflow: Workflow, registry: OperatorRegistry, kind: str, out: list[Violation]) -> None:
    for ref in workflow.walk():
        node = ref.node
        spec = registry.lookup_case_insensitive(node.operator) if isinstance(node, OperatorNode) else None
        if spec is None or spec.applies_to(kind):
            continue
        instead = [s.name for s in registry.by_role(spec.role) if s.applies_to(kind)]
        out.append(Violation(
            "wrong_task_kind",
            f"{spec.name} works on {' and '.join(sorted(spec.task_kinds))} tasks and has nothing to "
            f"do on a {kind} task" + (f"; use {' or '.join(instead)} instead" if instead else ""),
            node.id,
        ))


def _check_operator(node: OperatorNode, registry: OperatorRegistry, out: list[Violation]) -> None:
    if node.operator not in registry:
        out.append(Violation(
            "unknown_operator",
            f"unknown operator {node.operator!r}; valid operators: {', '.join(registry.names())}",
            node.id,
        ))
