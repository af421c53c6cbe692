"""Ensemblers: reduce the candidates of a Parallel block (a single string is one candidate)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from flowsteer.operators.base import OperatorCall, OperatorResult, Usage
from flowsteer.operators.llm import LLMOperator
from flowsteer.operators.parsing import (
    answer_key,
    candidates,
    extract_tag,
    parse_choice,
    parse_number,
    primary,
)

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["ScEnsemble", "Aggregate", "numeric_majority"]


def numeric_majority(options: tuple[str, ...]) -> str | None:
    """Aggregate's deterministic fast path: with two or more candidates that are all plain
    numbers, the unanimous or strict-majority value (as first written); otherwise ``None``."""
    if len(options) < 2:
        return None
    numbers = [parse_number(o) for o in options]
    if any(n is None for n in numbers):
        return None
    value, count = Counter(numbers).most_common(1)[0]
    if count * 2 <= len(options):
        return None
    return next(o.strip() for o, n in zip(options, numbers, strict=True) if n == value)


class ScEnsemble(LLMOperator):
    """Self-consistency: choose the candidate whose answer most candidates agree on."""

    name = "ScEnsemble"
    prompt_file = "sc_ensemble.txt"
    takes_candidates = True

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        options = candidates(call.input)
        if not options:
            return OperatorResult(output="", error="ScEnsemble received no candidates; place it after a "
                                  "parallel block or a solver")
        if len({answer_key(o) for o in options}) == 1:
            # Nothing to choose: every candidate says the same thing, so no model call is spent.
            return OperatorResult(output=options[0], data={"chosen": 0, "unanimous": True}, usage=Usage())
        return await super().arun(call, config)

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        options = candidates(call.input)
        index = parse_choice(text, len(options))
        if index is None:
            return OperatorResult(output=options[0], error=f"no valid <choice> letter (A-"
                                  f"{chr(ord('A') + len(options) - 1)}) in the reply")
        return OperatorResult(output=options[index], data={"chosen": index, "unanimous": False})


class Aggregate(LLMOperator):
    """Combine candidate or partial answers into one final answer.

    Two or more plain-number candidates with a unanimous or strict-majority value are reduced
    without a model call (``data["fast_path"]``).
    """

    name = "Aggregate"
    prompt_file = "aggregate.txt"
    takes_candidates = True

    async def arun(self, call: OperatorCall, config: RunnableConfig | None = None) -> OperatorResult:
        options = candidates(call.input)
        if not options:
            return OperatorResult(output="", error="Aggregate received no candidates; place it after a "
                                  "parallel block or a solver")
        majority = numeric_majority(options)
        if majority is not None:
            return OperatorResult(output=majority, data={"fast_path": True})
        return await super().arun(call, config)

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        answer = extract_tag(text, "answer")
        if answer is None:
            return OperatorResult(output=primary(call.input), error="no <answer> tag in the reply")
        return OperatorResult(output=answer, data={"fast_path": False})
