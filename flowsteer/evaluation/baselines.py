"""The methods the harness compares, all on the same executor: the director and the baselines.

A method is a frozen dataclass (a tagged union dispatched with ``match`` in :func:`run_method`):

=======================  ==========================================================================
``DirectorMethod``       the multi-turn Flow-Director on the canvas (``flowsteer``, or ``untrained``
                         for the base model without an adapter: the paper's "w/o RL")
``SingleTurn``           the director writes the whole workflow at once as DSL ("w/o multi-turn")
``IOBaseline``           the executor alone, one call
``CoTBaseline``          one chain-of-thought call, final answer extracted
``SelfConsistency``      k chain-of-thought samples, majority vote over the extracted answers
``TemplateBaseline``     a fixed workflow (the paper's recommended ones, the fallback templates, or
                         any DSL) run by the Interpreter
=======================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flowsteer.errors import UserError
from flowsteer.operators.base import Usage
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult, Interpreter
from flowsteer.workflow.ir import Workflow

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from flowsteer.canvas import CanvasConfig
    from flowsteer.director import Director

__all__ = [
    "DirectorMethod",
    "SingleTurn",
    "IOBaseline",
    "CoTBaseline",
    "SelfConsistency",
    "TemplateBaseline",
    "Method",
    "MethodOutput",
    "MethodContext",
    "BASELINE_NAMES",
    "parse_method",
    "method_label",
    "needs_director",
    "workflow_templates",
    "resolve_template",
    "run_method",
    "extract_final",
    "majority_vote",
]

BASELINE_NAMES = ("io", "cot", "sc", "template:NAME", "single-turn", "untrained")


@dataclass(frozen=True)
class DirectorMethod:
    """The multi-turn director (the method under test)."""

    label: str = "flowsteer"


@dataclass(frozen=True)
class SingleTurn:
    """The director emits the whole workflow in one reply (no canvas feedback)."""


@dataclass(frozen=True)
class IOBaseline:
    """The executor alone: one call, the reply is the answer."""


@dataclass(frozen=True)
class CoTBaseline:
    """One chain-of-thought call; the final answer is extracted from the reasoning."""


@dataclass(frozen=True)
class SelfConsistency:
    """``k`` chain-of-thought samples at ``temperature``, majority vote over the extracted answers."""

    k: int = 5
    temperature: float = 0.7

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"self-consistency needs k >= 1 samples, got {self.k}")


@dataclass(frozen=True)
class TemplateBaseline:
    """A fixed workflow: a template name, a DSL string, or None for each task kind's default."""

    name: str | None = None


Method = DirectorMethod | SingleTurn | IOBaseline | CoTBaseline | SelfConsistency | TemplateBaseline


@dataclass(frozen=True)
class MethodOutput:
    """What a method produced for one task (before scoring)."""

    answer: str
    workflow: str = ""
    turns: int = 0
    director_usage: Usage = Usage()
    executor_usage: Usage = Usage()
    stop_reason: str = ""
    fallback: str | None = None
    errors: tuple[str, ...] = ()
    """Why the run failed: the exception that ended it, or the error that aborted its workflow run."""
    details: Mapping[str, Any] = field(default_factory=dict)
    trajectory: Any = field(default=None, repr=False, compare=False)
    """The director's :class:`~flowsteer.director.Trajectory` (director and single-turn methods)."""


@dataclass(frozen=True)
class MethodContext:
    """The shared pieces a method runs with (one per evaluation)."""

    executor: BaseChatModel
    """The executor chat model (usually wrapped in the call cache)."""
    interpreter: Interpreter
    registry: OperatorRegistry
    director: Director | None = None
    canvas_config: CanvasConfig | None = None
    templates: Mapping[str, str] = field(default_factory=dict)
    """Template name -> DSL (see :func:`workflow_templates`)."""


def parse_method(spec: str | None, *, director: bool = True, sc_samples: int = 5,
                 sc_temperature: float = 0.7) -> Method:
    """The method for a ``--baseline`` value (None: the director, when one is given)."""
    if spec is None or spec == "":
        if not director:
            raise UserError("nothing to evaluate: give a director (--director SPEC) or a baseline "
                            f"(--baseline {'|'.join(BASELINE_NAMES)})")
        return DirectorMethod()
    name, _, arg = spec.partition(":")
    match name.strip().lower():
        case "io":
            return IOBaseline()
        case "cot":
            return CoTBaseline()
        case "sc":
            return SelfConsistency(int(arg) if arg.strip().isdigit() else sc_samples, sc_temperature)
        case "template":
            return TemplateBaseline(arg.strip() or None)
        case "single-turn" | "single_turn":
            return SingleTurn()
        case "untrained":
            return DirectorMethod("untrained")
    raise UserError(f"unknown baseline {spec!r}; use one of: {', '.join(BASELINE_NAMES)} "
                    "(sc:K sets the number of samples; template:NAME takes a template name or a DSL string)")


def method_label(method: Method) -> str:
    """The name a method has in results and tables."""
    match method:
        case DirectorMethod(label=label):
            return label
        case SingleTurn():
            return "single-turn"
        case IOBaseline():
            return "io"
        case CoTBaseline():
            return "cot"
        case SelfConsistency(k=k):
            return f"sc@{k}"
        case TemplateBaseline(name=name):
            return f"template:{name}" if name else "template"
    raise UserError(f"not an evaluation method: {method!r}")


def needs_director(method: Method) -> bool:
    """Whether the method needs a director model."""
    return isinstance(method, (DirectorMethod, SingleTurn))


# -- templates -------------------------------------------------------------------------------------
@cache
def _packaged_templates() -> Mapping[str, str]:
    text = resources.files("flowsteer.evaluation.prompts").joinpath("templates.json").read_text(encoding="utf-8")
    return MappingProxyType({name: entry["dsl"] for name, entry in json.loads(text).items()})


def workflow_templates() -> dict[str, str]:
    """Template name -> DSL: the paper's recommended workflows (``paper-math``, ``paper-code``) and the
    fallback templates of :mod:`flowsteer.fallback` (``math-default``, ``code-default``, ``qa-default``)."""
    from flowsteer.fallback import FALLBACK_TEMPLATES

    return {**_packaged_templates(), **FALLBACK_TEMPLATES}


def resolve_template(method: TemplateBaseline, task: Task, templates: Mapping[str, str],
                     registry: OperatorRegistry) -> Workflow:
    """The workflow a template baseline runs for ``task`` (UserError naming the known templates)."""
    from flowsteer.fallback import KIND_TEMPLATES
    from flowsteer.workflow.dsl import parse

    name = method.name or KIND_TEMPLATES.get(task.kind, f"{task.kind}-default")
    if name in templates:
        return parse(templates[name], registry)
    try:
        return parse(name, registry)
    except UserError:
        raise UserError(f"no workflow template named {name!r} and it is not a DSL workflow; known templates: "
                        f"{', '.join(sorted(templates))}") from None


# -- single-call baselines -------------------------------------------------------------------------
@cache
def _prompt(name: str) -> str:
    return resources.files("flowsteer.evaluation.prompts").joinpath(name).read_text(encoding="utf-8").strip()


def _messages(task: Task, system_file: str) -> list[tuple[str, str]]:
    entry = f" that defines the function `{task.entry_point}`" if task.entry_point else ""
    conventions = _prompt(f"kind_{task.kind}.txt").replace("{entry}", entry)
    system = _prompt(system_file).replace("{conventions}", conventions)
    user = _prompt("user.txt").replace("{question}", task.question)
    return [("system", system), ("user", user)]


def extract_final(task: Task, reply: str) -> str:
    """The final answer in a free-form reply, the way the task kind's scorer reads it."""
    from flowsteer.scoring import extract_answer, extract_code
    from flowsteer.scoring.qa import extract_qa_answer

    match task.kind:
        case "math":
            return extract_answer(reply) or reply.strip()
        case "qa":
            return extract_qa_answer(reply)
        case _:
            return extract_code(reply, task.entry_point)


def majority_vote(task: Task, answers: list[str]) -> tuple[int, list[int]]:
    """``(index of the winner, votes per answer)``: answers are grouped by equivalence (math),
    normalised text (QA) or whitespace-normalised code; ties go to the earliest sample."""
    from flowsteer.scoring import math_equal, normalize_answer

    def same(a: str, b: str) -> bool:
        match task.kind:
            case "math":
                return a.strip() == b.strip() or math_equal(a, b)
            case "qa":
                return normalize_answer(a) == normalize_answer(b)
            case _:
                return " ".join(a.split()) == " ".join(b.split())

    votes = [sum(same(a, b) for b in answers) if a.strip() else 0 for a in answers]
    best = max(range(len(answers)), key=lambda i: (votes[i], -i))
    return best, votes


async def _call(ctx: MethodContext, task: Task, system_file: str, **kwargs: Any) -> tuple[str, Usage]:
    from flowsteer.operators.llm import reply_text, usage_of

    reply = await ctx.executor.ainvoke(_messages(task, system_file), **kwargs)
    return reply_text(reply), usage_of(reply)


def _sampling_kwargs(model: BaseChatModel, temperature: float) -> dict[str, Any]:
    from flowsteer.models.calls import generation_kwargs

    inner = getattr(model, "inner", model)  # the call cache wraps the real model
    return generation_kwargs(inner, temperature=temperature)


async def _self_consistency(method: SelfConsistency, task: Task, ctx: MethodContext) -> MethodOutput:
    kwargs = _sampling_kwargs(ctx.executor, method.temperature)
    replies = await asyncio.gather(*(_call(ctx, task, "cot_system.txt", **kwargs) for _ in range(method.k)))
    answers = [extract_final(task, text) for text, _ in replies]
    winner, votes = majority_vote(task, answers)
    usage = sum((u for _, u in replies), Usage())
    return MethodOutput(answers[winner], executor_usage=usage, stop_reason="vote",
                        details={"samples": answers, "votes": votes})


# -- workflow methods ------------------------------------------------------------------------------
def _execution_errors(execution: ExecutionResult | None) -> tuple[tuple[str, ...], list[str]]:
    if execution is None:
        return (), []
    node_errors = [f"{t.operator} ({t.node_id}): {t.result.error}" for t in execution.node_errors]
    return ((execution.error,) if execution.error else ()), node_errors


async def _template(method: TemplateBaseline, task: Task, ctx: MethodContext) -> MethodOutput:
    workflow = resolve_template(method, task, ctx.templates, ctx.registry)
    execution = await ctx.interpreter.arun(workflow, task)
    errors, node_errors = _execution_errors(execution)
    return MethodOutput(execution.answer, workflow=workflow.dsl, executor_usage=execution.usage,
                        stop_reason="template", errors=errors, details={"node_errors": node_errors})


def _director(ctx: MethodContext) -> Director:
    if ctx.director is None:
        raise UserError("this method needs a director model: pass director= (or --director SPEC)")
    return ctx.director


async def _designed(method: DirectorMethod | SingleTurn, task: Task, ctx: MethodContext) -> MethodOutput:
    from flowsteer.canvas import Canvas
    from flowsteer.director import arun_single_turn

    director = _director(ctx)
    if isinstance(method, SingleTurn):
        trajectory = await arun_single_turn(director.model, task, ctx.interpreter, registry=ctx.registry,
                                            config=director.config)
    else:
        canvas = Canvas(ctx.interpreter, registry=ctx.registry, config=ctx.canvas_config)
        trajectory = await director.arun(task, canvas, on_error="record")  # keeps the turns before a failure
    errors, node_errors = _execution_errors(trajectory.execution)
    if getattr(trajectory, "error", None):  # a director call raised and ended the episode
        errors = (f"director: {trajectory.error}", *errors)
    failures = [t.parse_failure.message for t in trajectory.turns if t.parse_failure is not None]
    designed = trajectory.designed.dsl if trajectory.designed is not None else trajectory.workflow.dsl
    return MethodOutput(
        trajectory.answer, workflow=trajectory.workflow.dsl, turns=max((t.index for t in trajectory.turns), default=0),
        director_usage=trajectory.usage, executor_usage=trajectory.executor_usage,
        stop_reason=trajectory.stop_reason, fallback=trajectory.fallback, errors=errors,
        details={"node_errors": node_errors, "invalid_outputs": len(failures), "designed": designed,
                 "valid_action_rate": round(trajectory.valid_action_rate, 4)},
        trajectory=trajectory,
    )


async def run_method(method: Method, task: Task, ctx: MethodContext) -> MethodOutput:
    """Run ``method`` on ``task`` (scoring is the harness's job)."""
    match method:
        case IOBaseline():
            text, usage = await _call(ctx, task, "io_system.txt")
            return MethodOutput(text, executor_usage=usage, stop_reason="answered")
        case CoTBaseline():
            text, usage = await _call(ctx, task, "cot_system.txt")
            return MethodOutput(extract_final(task, text), executor_usage=usage, stop_reason="answered",
                                details={"reply": text[-500:]})
        case SelfConsistency():
            return await _self_consistency(method, task, ctx)
        case TemplateBaseline():
            return await _template(method, task, ctx)
        case DirectorMethod() | SingleTurn():
            return await _designed(method, task, ctx)
    raise UserError(f"not an evaluation method: {method!r}")
