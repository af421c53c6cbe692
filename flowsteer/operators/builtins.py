"""The 12 built-in operators of the paper, declared as :class:`OperatorSpec` values.

Implementations live in :mod:`~flowsteer.operators.solvers` (Plan, Decompose, Custom,
AnswerGenerate, Revise, Format), :mod:`~flowsteer.operators.checkers` (Review, Verify),
:mod:`~flowsteer.operators.code` (Programmer, Test) and :mod:`~flowsteer.operators.ensemble`
(ScEnsemble, Aggregate).
"""

from __future__ import annotations

from flowsteer.operators.base import Role
from flowsteer.operators.checkers import Review, Verify
from flowsteer.operators.code import Programmer, Test
from flowsteer.operators.ensemble import Aggregate, ScEnsemble
from flowsteer.operators.solvers import AnswerGenerate, Custom, Decompose, Format, Plan, Revise
from flowsteer.operators.spec import OperatorSpec

__all__ = [
    "builtin_specs",
    "BUILTIN_NAMES",
    "Plan",
    "Decompose",
    "Programmer",
    "Custom",
    "AnswerGenerate",
    "Test",
    "Review",
    "Verify",
    "Revise",
    "ScEnsemble",
    "Aggregate",
    "Format",
]

_BUILTIN = frozenset({"builtin"})
_CHECK_OUT = ("output", "verdict", "feedback")


def builtin_specs() -> list[OperatorSpec]:
    """Fresh specs of the 12 built-ins, in the paper's order (planning ... formatting)."""
    return [
        OperatorSpec(
            "Plan", Role.PLANNING, "Writes a strategy and numbered steps for the solvers that follow.",
            Plan, inputs=("task", "input", "prompt"), outputs=("output", "steps"), tags=_BUILTIN,
            usage_hint="Put it first. Its prompt should say what the plan must cover (e.g. 'identify the "
                       "quantities and the equation linking them'); it never gives the answer.",
        ),
        OperatorSpec(
            "Decompose", Role.PLANNING, "Splits the task into 2-5 sub-problems to solve in order.",
            Decompose, inputs=("task", "input", "prompt"), outputs=("output", "sub_problems"), tags=_BUILTIN,
            usage_hint="Use first on multi-part or multi-hop tasks; follow it with a solver and Aggregate "
                       "when the parts must be combined.",
        ),
        OperatorSpec(
            "Programmer", Role.SOLVING, "Writes a Python program and runs it in the sandbox; returns "
            "its printed answer (code tasks: the code).",
            Programmer, inputs=("task", "input", "prompt", "feedback"), outputs=("output", "code"),
            runs_code=True, tags=_BUILTIN,
            usage_hint="Best for arithmetic, counting and code tasks. Its prompt should name the method "
                       "(e.g. 'use sympy to solve the system exactly'). Retries with the error fed back.",
        ),
        OperatorSpec(
            "Custom", Role.SOLVING, "Free-form reasoning that does exactly what its prompt instructs.",
            Custom, inputs=("task", "input", "prompt", "feedback"), outputs=("output",), tags=_BUILTIN,
            usage_hint="A general solver or helper: its prompt is the whole instruction, so make it "
                       "specific. Its output is verbose; end the workflow with Format.",
        ),
        OperatorSpec(
            "AnswerGenerate", Role.SOLVING, "Reasons step by step and returns only the bare final answer.",
            AnswerGenerate, inputs=("task", "input", "prompt"), outputs=("output", "thought"), tags=_BUILTIN,
            usage_hint="A direct solver whose output is already a short answer; good in parallel "
                       "branches feeding ScEnsemble.",
        ),
        OperatorSpec(
            "Test", Role.CHECKING, "Runs the task's public tests on the candidate code in the sandbox; "
            "passes or fails with the error.",
            Test, inputs=("task", "input"), outputs=_CHECK_OUT, runs_code=True, tags=_BUILTIN,
            task_kinds=frozenset({"code"}),
            usage_hint="For code tasks, after the code is written: 'Test ? Revise : done'. On math/QA "
                       "answers it has nothing to run; use Verify or Review there.",
        ),
        OperatorSpec(
            "Review", Role.CHECKING, "Critically reviews the current solution; fails it only when "
            "confident it is wrong, with feedback.",
            Review, inputs=("task", "input", "prompt"), outputs=_CHECK_OUT, tags=_BUILTIN,
            usage_hint="Use as a condition, 'Review ? Revise : done', or in a loop "
                       "'(Review -> Revise) * 3'. Its prompt can say what to check.",
        ),
        OperatorSpec(
            "Verify", Role.CHECKING, "Re-solves the task independently and compares with the proposed "
            "answer; may correct it when confident.",
            Verify, inputs=("task", "input", "prompt"), outputs=_CHECK_OUT + ("answer", "confidence"),
            tags=_BUILTIN,
            usage_hint="Use after a solver or ensemble: 'Verify ? Revise : done'. Strongest checker for "
                       "math answers.",
        ),
        OperatorSpec(
            "Revise", Role.REVISING, "Fixes the current solution using the last checker's feedback.",
            Revise, inputs=("task", "input", "prompt", "feedback"), outputs=("output",), tags=_BUILTIN,
            usage_hint="Place it where a check failed: 'Verify ? Revise : done' or inside a loop after a "
                       "checker. Without feedback it does a self-check.",
        ),
        OperatorSpec(
            "ScEnsemble", Role.ENSEMBLING, "Picks the candidate whose answer most parallel branches "
            "agree on (self-consistency).",
            ScEnsemble, inputs=("task", "input", "prompt"), outputs=("output",), tags=_BUILTIN,
            usage_hint="Put it right after a parallel block of solvers: '[Programmer, Custom, "
                       "AnswerGenerate] -> ScEnsemble'.",
        ),
        OperatorSpec(
            "Aggregate", Role.ENSEMBLING, "Combines candidate or partial answers into one final answer "
            "(numeric majority without a model call).",
            Aggregate, inputs=("task", "input", "prompt"), outputs=("output",), tags=_BUILTIN,
            usage_hint="After a parallel block, or after Decompose-driven solving to combine the parts.",
        ),
        OperatorSpec(
            "Format", Role.FORMATTING, "Extracts the final answer span (code tasks: the clean final code).",
            Format, inputs=("task", "input", "prompt"), outputs=("output",), tags=_BUILTIN, max_in_row=1,
            ends_workflow=True,
            usage_hint="Put it last whenever the previous output is verbose (Custom, Revise, Review).",
        ),
    ]


BUILTIN_NAMES: tuple[str, ...] = tuple(spec.name for spec in builtin_specs())
"""The 12 built-in operator names in the paper's order."""
