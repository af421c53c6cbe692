"""LLM checkers: Review and Verify. Both pass the checked solution through as ``output``."""

from __future__ import annotations

import re

from flowsteer.operators.base import OperatorCall, OperatorResult
from flowsteer.operators.llm import LLMOperator
from flowsteer.operators.parsing import (
    answer_key,
    extract_tag,
    parse_confidence,
    parse_verdict,
    primary,
)

__all__ = ["Review", "Verify"]


class Review(LLMOperator):
    """Critical review of the current solution: fails only when confident it is wrong."""

    name = "Review"
    prompt_file = "review.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        solution = primary(call.input)
        verdict = parse_verdict(text)
        feedback = extract_tag(text, "feedback") or ""
        if verdict is None:
            return OperatorResult(output=solution, feedback=feedback or None,
                                  error="no <verdict>pass</verdict> or <verdict>fail</verdict> in the reply")
        return OperatorResult(output=solution, verdict=verdict, feedback=feedback or _default(verdict))


class Verify(LLMOperator):
    """Independent re-computation compared with the proposed answer.

    When the check fails with high confidence and the verifier gave its own answer, that answer
    replaces the proposed one as ``output`` (``data["overwritten"]``); the verdict stays a fail so
    a following Revise still runs.
    """

    name = "Verify"
    prompt_file = "verify.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        proposed = primary(call.input)
        verdict = parse_verdict(text)
        own = extract_tag(text, "answer")
        confidence = parse_confidence(text)
        feedback = extract_tag(text, "feedback") or ""
        if verdict is None and own is not None and proposed:
            verdict = _agrees(own, proposed)
        data = {"answer": own, "confidence": confidence, "proposed": proposed, "overwritten": False}
        if verdict is None:
            return OperatorResult(output=proposed, data=data,
                                  error="no <verdict> (and no <answer> to compare) in the reply")
        output = proposed
        if not verdict and own and confidence == "high" and call.task.kind != "code":
            output = own
            data["overwritten"] = True
        if not verdict and own:
            feedback = f"{feedback}\nThe verifier computed: {own} (confidence: {confidence})".strip()
        return OperatorResult(output=output, verdict=verdict, feedback=feedback or _default(verdict),
                              data=data)


def _agrees(own: str, proposed: str) -> bool:
    """Does the verifier's answer match the proposed one (whole text or its last line)?"""
    last_line = proposed.strip().splitlines()[-1] if proposed.strip() else ""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?", proposed)
    keys = {answer_key(proposed), answer_key(last_line)}
    if numbers:
        keys.add(answer_key(numbers[-1]))
    return answer_key(own) in keys


def _default(verdict: bool) -> str:
    return "The check passed." if verdict else "The check failed without an explanation."
