"""Graceful fallback: never leave a user without a workflow.

When an episode ends without a finishable workflow (the turn limit hit before ``finish``, every
edit refused, an empty canvas, a workflow that errors or fails the finish constraints),
:func:`fallback_reason` says why, and :func:`apply_fallback` runs a named template workflow instead
and marks the trajectory (``Trajectory.fallback = "math-default: <reason>"``) so the output and
every log show that the answer did not come from the designed workflow.

Policy (issue 11): on by default for ``flowsteer run``, off for training and evaluation, where a
fallback would hide the director's failures from the reward and the metrics.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flowsteer.errors import UserError
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult, Interpreter
from flowsteer.workflow.ir import Workflow

__all__ = [
    "FALLBACK_TEMPLATES",
    "KIND_TEMPLATES",
    "FallbackResult",
    "fallback_reason",
    "select_template",
    "run_fallback",
    "arun_fallback",
    "apply_fallback",
    "aapply_fallback",
]

logger = logging.getLogger(__name__)

FALLBACK_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "math-default": "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format",
    "code-default": "Plan -> Programmer -> Test ? Revise : done -> Format",
    "qa-default": "Plan -> [AnswerGenerate, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format",
})
"""Name -> DSL of each fallback workflow (each satisfies the default finish constraints)."""

KIND_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "math": "math-default", "code": "code-default", "qa": "qa-default",
})
"""Task kind -> the template used when no name is given."""

_FINISHED = frozenset({"finished", "finish"})


@dataclass(frozen=True)
class FallbackResult:
    """A fallback run: which template, why, and what it produced."""

    name: str
    reason: str
    workflow: Workflow
    execution: ExecutionResult

    @property
    def answer(self) -> str:
        return self.execution.answer

    @property
    def label(self) -> str:
        """``"<name>: <reason>"``, the value stored in ``Trajectory.fallback``."""
        return f"{self.name}: {self.reason}"


def fallback_reason(
    stop_reason: str,
    workflow: Workflow,
    execution: ExecutionResult | None,
    task: Task,
    *,
    registry: OperatorRegistry | None = None,
    finish: Any = None,
) -> str | None:
    """Why this episode needs a fallback, or None when its workflow can stand.

    A finished episode never needs one. Otherwise the workflow must be non-empty, have run without
    error to a non-empty answer, and satisfy the finish constraints (``finish``: a
    :class:`~flowsteer.canvas.FinishConstraints`, default ones when None).
    """
    if stop_reason in _FINISHED:
        return None
    ended = f"episode ended without finish ({stop_reason})"
    if workflow.is_empty:
        return f"{ended}; the canvas is empty"
    if execution is None:
        return f"{ended}; the workflow never ran"
    if execution.error is not None:
        return f"{ended}; the workflow failed: {execution.error[:120]}"
    if not execution.answer.strip():
        return f"{ended}; the workflow gave no answer"
    if finish is None:
        from flowsteer.canvas.constraints import FinishConstraints

        finish = FinishConstraints()
    problems = finish.check(workflow, task, execution, registry or default_registry())
    if problems:
        return f"{ended}; not finishable: {problems[0]}"
    return None


def select_template(
    task: Task,
    name: str | None = None,
    templates: Mapping[str, str] | None = None,
    registry: OperatorRegistry | None = None,
) -> tuple[str, Workflow]:
    """``(name, workflow)`` of the template to run: ``name``, else the task kind's default.

    ``templates`` maps names (or task kinds, as ``DirectorConfig.fallback_templates`` does) to DSL.
    """
    from flowsteer.workflow.dsl import parse

    templates = FALLBACK_TEMPLATES if templates is None else templates
    if name is None:
        default = KIND_TEMPLATES.get(task.kind, f"{task.kind}-default")
        name = default if default in templates else task.kind
    if name not in templates:
        raise UserError(f"no fallback template named {name!r}; known: {', '.join(templates) or 'none'} "
                        "(pass templates={name: dsl} to add one)")
    label = name if "-" in name else f"{name}-default"
    return label, parse(templates[name], registry or default_registry())


def _interpreter(executor: Any, registry: OperatorRegistry | None) -> Interpreter:
    from flowsteer.canvas import Canvas

    if isinstance(executor, Canvas):
        return executor.interpreter
    return Interpreter.of(executor, registry=registry)


async def arun_fallback(
    task: Task,
    executor: Any,
    *,
    reason: str = "requested",
    name: str | None = None,
    templates: Mapping[str, str] | None = None,
    registry: OperatorRegistry | None = None,
) -> FallbackResult:
    """Run the fallback template for ``task`` on ``executor`` (a chat model, an Interpreter or a Canvas)."""
    interpreter = _interpreter(executor, registry)
    label, workflow = select_template(task, name, templates, registry or interpreter.registry)
    logger.info("running fallback workflow %s for task %s: %s", label, task.id or "?", reason)
    execution = await interpreter.arun(workflow, task)
    return FallbackResult(label, reason, workflow, execution)


def run_fallback(task: Task, executor: Any, **kwargs: Any) -> FallbackResult:
    """Synchronous :func:`arun_fallback`."""
    from flowsteer.sync import run_sync

    return run_sync(arun_fallback(task, executor, **kwargs))


async def aapply_fallback(
    trajectory: Any,
    executor: Any,
    *,
    name: str | None = None,
    templates: Mapping[str, str] | None = None,
    registry: OperatorRegistry | None = None,
    finish: Any = None,
) -> Any:
    """``trajectory`` unchanged when its workflow can stand; else a copy answered by a fallback.

    The copy has ``workflow``/``execution``/``answer`` from the template, ``fallback`` set to
    ``"<template>: <reason>"``, ``designed`` keeping the director's own workflow, and the fallback's
    executor tokens added to ``executor_usage``.
    """
    reason = fallback_reason(trajectory.stop_reason, trajectory.workflow, trajectory.execution,
                             trajectory.task, registry=registry, finish=finish)
    if reason is None:
        return trajectory
    result = await arun_fallback(trajectory.task, executor, reason=reason, name=name, templates=templates,
                                 registry=registry)
    changes: dict[str, Any] = {"workflow": result.workflow, "execution": result.execution,
                               "answer": result.answer, "fallback": result.label}
    fields = {f.name for f in dataclasses.fields(trajectory)}
    if "designed" in fields:
        changes["designed"] = trajectory.designed or trajectory.workflow
    if "executor_usage" in fields:
        changes["executor_usage"] = trajectory.executor_usage + result.execution.usage
    return dataclasses.replace(trajectory, **changes)


def apply_fallback(trajectory: Any, executor: Any, **kwargs: Any) -> Any:
    """Synchronous :func:`aapply_fallback`."""
    from flowsteer.sync import run_sync

    return run_sync(aapply_fallback(trajectory, executor, **kwargs))
