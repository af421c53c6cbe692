"""Deterministic scorers (R_answer): math equivalence, QA token F1 / EM, code pass@1 on hidden tests.

``score(task, answer)`` dispatches on ``task.kind``; no LLM is involved. Multiple-choice math tasks
(MathQA) carry ``task.meta["choices"]`` and are graded by option letter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowsteer.scoring.base import Score
from flowsteer.scoring.code import ascore_code, extract_code, score_code
from flowsteer.scoring.math import extract_answer, math_equal, score_math
from flowsteer.scoring.qa import exact_match, normalize_answer, score_qa, token_f1
from flowsteer.tasks import Task

if TYPE_CHECKING:
    from flowsteer.sandbox import Sandbox

__all__ = [
    "Score",
    "score",
    "ascore",
    "score_math",
    "score_qa",
    "score_code",
    "ascore_code",
    "math_equal",
    "extract_answer",
    "extract_code",
    "normalize_answer",
    "token_f1",
    "exact_match",
]


def score(task: Task, answer: str | None, *, sandbox: Sandbox | None = None) -> Score:
    """Grade ``answer`` for ``task``. Code tasks run the hidden tests in ``sandbox`` (a default
    :class:`~flowsteer.sandbox.Sandbox` when None)."""
    text = answer or ""
    match task.kind:
        case "math":
            return score_math(task, text)
        case "qa":
            return score_qa(task, text)
        case "code":
            return score_code(task, text, sandbox=sandbox)
    raise AssertionError(f"unreachable: Task validated kind {task.kind!r}")


async def ascore(task: Task, answer: str | None, *, sandbox: Sandbox | None = None) -> Score:
    """Async twin of :func:`score`; only code scoring actually awaits (the sandbox)."""
    if task.kind == "code":
        return await ascore_code(task, answer or "", sandbox=sandbox)
    return score(task, answer, sandbox=sandbox)
