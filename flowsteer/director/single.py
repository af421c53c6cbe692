"""The single-turn baseline ("w/o multi-turn"): the whole workflow emitted at once as DSL.

The model sees the operators and the workflow language and answers with one DSL line, parsed with
:func:`flowsteer.workflow.dsl.parse`; no canvas, no feedback. The evaluation harness compares it with the
multi-turn director.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from flowsteer.director._calls import call_model, call_seed
from flowsteer.director.config import DirectorConfig
from flowsteer.director.context import BudgetParts, fit_messages, token_counter
from flowsteer.director.prompts import single_turn_prompt
from flowsteer.director.trajectory import Trajectory, TurnRecord
from flowsteer.errors import DSLParseError, ParseFailure, WorkflowValidationError
from flowsteer.models.calls import generation_kwargs
from flowsteer.operators.base import Usage
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter
from flowsteer.workflow.ir import Workflow

__all__ = ["SingleTurnDesign", "adesign_once", "design_once", "arun_single_turn"]

_DSL_LINE = re.compile(r"^[\s\[(]*[A-Z][A-Za-z0-9_]*.*$")


@dataclass(frozen=True)
class SingleTurnDesign:
    """The parsed workflow (or why there is none) and the record of the one call."""

    workflow: Workflow | None
    failure: ParseFailure | None
    record: TurnRecord


def _candidates(text: str) -> list[str]:
    """Lines that might be the DSL, most likely first (the last fenced/backticked line wins)."""
    cleaned = text.replace("```", "\n").replace("`", "\n")
    lines = [ln.strip().rstrip(".") for ln in cleaned.splitlines() if ln.strip()]
    arrowed = [ln for ln in lines if "->" in ln]
    return arrowed[::-1] + [ln for ln in lines if ln not in arrowed and _DSL_LINE.match(ln)]


async def adesign_once(model: BaseChatModel, task: Task | str, *, registry: OperatorRegistry | None = None,
                       config: DirectorConfig | None = None) -> SingleTurnDesign:
    """Ask ``model`` for the whole workflow in one reply and parse it."""
    task = Task(task) if isinstance(task, str) else task
    registry = registry or default_registry()
    config = config or DirectorConfig()
    system = single_turn_prompt(registry, task.kind, hints=config.task_hints, usage_hints=config.usage_hints)

    def render(p: BudgetParts) -> list[dict[str, str]]:
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"## Task ({task.kind})\n{p.question}\n\nReply with the workflow."}]

    messages, used = fit_messages(BudgetParts([], "", task.question), render, token_counter(model),
                                  config.context_budget - config.max_action_tokens)
    kwargs = generation_kwargs(model, max_tokens=config.max_action_tokens, temperature=config.temperature,
                               top_p=config.top_p)
    kwargs.update(config.extra_call_kwargs)
    if kwargs.get("seed") is not None:
        kwargs["seed"] = call_seed(int(kwargs["seed"]), task, 0)  # one sample per task, not one for all
    result = await call_model(model, messages, kwargs, used)
    workflow, failure = None, None
    errors = []
    for line in _candidates(result.visible):
        try:
            workflow = parse(line, registry)
            break
        except DSLParseError as exc:
            errors.append(exc.reason)
    if workflow is None:
        failure = ParseFailure(f"no parsable workflow in the reply ({'; '.join(errors[:2]) or 'empty'})",
                               result.raw[:300])
    record = TurnRecord(index=1, messages=messages, raw_output=result.raw, thinking=result.thinking,
                        action=None, parse_failure=failure, feedback="", usage=result.usage, state="building",
                        tokens=result.tokens, kind="action", sent=True, accepted=workflow is not None,
                        context_tokens=used, seconds=result.seconds)
    return SingleTurnDesign(workflow, failure, record)


def design_once(model: BaseChatModel, task: Task | str, **kwargs: object) -> SingleTurnDesign:
    """Sync twin of :func:`adesign_once`."""
    return run_sync(adesign_once(model, task, **kwargs))  # type: ignore[arg-type]


async def arun_single_turn(model: BaseChatModel, task: Task | str, executor: BaseChatModel | Interpreter, *,
                           registry: OperatorRegistry | None = None,
                           config: DirectorConfig | None = None) -> Trajectory:
    """Design once, execute the workflow, and return it as a one-turn :class:`Trajectory`."""
    started = time.perf_counter()
    task = Task(task) if isinstance(task, str) else task
    registry = registry or default_registry()
    design = await adesign_once(model, task, registry=registry, config=config)
    interpreter = Interpreter.of(executor, registry=registry)
    workflow = design.workflow or Workflow()
    execution, error = None, None
    if design.workflow is not None:
        try:
            execution = await interpreter.arun(workflow, task)
        except WorkflowValidationError as exc:  # parsable, yet breaks a rule for this task: a failed design
            error = str(exc)
    return Trajectory(
        task=task, turns=[design.record], workflow=workflow,
        answer=execution.answer if execution is not None else "",
        stop_reason="finish" if execution is not None else "invalid", execution=execution, error=error,
        usage=design.record.usage, executor_usage=execution.usage if execution is not None else Usage(),
        max_context_tokens=design.record.context_tokens, designed=workflow,
        seconds=time.perf_counter() - started, meta={"mode": "single_turn"},
    )
