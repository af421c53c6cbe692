"""Planning, solving, revising and formatting operators (one model call each)."""

from __future__ import annotations

import re

from flowsteer.operators.base import OperatorCall, OperatorResult
from flowsteer.operators.llm import LLMOperator
from flowsteer.operators.parsing import extract_code, extract_tag, parse_items, primary, strip_fences

__all__ = ["Plan", "Decompose", "Custom", "AnswerGenerate", "Revise", "Format", "defines_function"]


def defines_function(code: str, name: str | None) -> bool:
    """True when ``code`` defines ``name`` (or when no name is required)."""
    if not name:
        return True
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, flags=re.MULTILINE) is not None


def _numbered(text: str) -> list[str]:
    """The ``1. ...`` lines of an untagged reply."""
    return [s.strip() for s in re.findall(r"^\s*\d+[.)]\s*(.+)$", text, flags=re.MULTILINE)]


class Plan(LLMOperator):
    """A strategy plus numbered steps for the solvers that follow (does not solve)."""

    name = "Plan"
    prompt_file = "plan.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        body = extract_tag(text, "plan")
        steps = parse_items(body) if body is not None else _numbered(text)
        if not steps:
            return OperatorResult(output=text.strip(), error="no <plan> with numbered steps in the reply")
        approach = extract_tag(text, "approach") or ""
        lines = [f"Approach: {approach}"] if approach else []
        lines += ["Plan:"] + [f"{i}. {s}" for i, s in enumerate(steps, 1)]
        return OperatorResult(output="\n".join(lines), data={"steps": tuple(steps), "approach": approach})


class Decompose(LLMOperator):
    """Split the task into 2-5 smaller sub-problems."""

    name = "Decompose"
    prompt_file = "decompose.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        body = extract_tag(text, "sub_problems")
        items = parse_items(body) if body is not None else _numbered(text)
        if not items:
            return OperatorResult(output=text.strip(), error="no <sub_problems> list in the reply")
        lines = ["Sub-problems:"] + [f"{i}. {s}" for i, s in enumerate(items, 1)]
        return OperatorResult(output="\n".join(lines), data={"sub_problems": tuple(items)})


class Custom(LLMOperator):
    """Free-form reasoning following the director's instruction; the whole reply flows on."""

    name = "Custom"
    prompt_file = "custom.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        cleaned = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL | re.IGNORECASE).strip()
        if not cleaned:
            return OperatorResult(output=primary(call.input), error="the model returned an empty reply")
        answer = extract_tag(cleaned, "answer")
        data = {"answer": answer} if answer else {}
        return OperatorResult(output=cleaned, data=data)


class AnswerGenerate(LLMOperator):
    """Step-by-step reasoning ending in a bare answer span; only the answer flows on."""

    name = "AnswerGenerate"
    prompt_file = "answer_generate.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        answer = extract_tag(text, "answer")
        thought = extract_tag(text, "thought") or ""
        if answer is None:
            return OperatorResult(output=text.strip(), data={"thought": thought},
                                  error="no <answer> tag in the reply")
        return OperatorResult(output=answer, data={"thought": thought, "answer": answer})


class Revise(LLMOperator):
    """Fix the current solution using the latest checker feedback."""

    name = "Revise"
    prompt_file = "revise.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        previous = primary(call.input)
        if call.task.kind == "code":
            code = extract_code(extract_tag(text, "solution") or text)
            if code is None:
                return OperatorResult(output=previous, error="no revised code in the reply")
            return OperatorResult(output=code, data={"code": code, "changed": code.strip() != previous.strip()})
        solution = extract_tag(text, "solution") or extract_tag(text, "answer")
        if solution is None:
            return OperatorResult(output=previous, error="no <solution> tag in the reply")
        return OperatorResult(output=solution, data={"changed": solution.strip() != previous.strip()})


class Format(LLMOperator):
    """Extract the final answer span (code tasks: the clean final code)."""

    name = "Format"
    prompt_file = "format.txt"

    def parse(self, text: str, call: OperatorCall) -> OperatorResult:
        previous = primary(call.input)
        if call.task.kind == "code":
            return self._code(text, previous, call.task.entry_point)
        answer = extract_tag(text, "answer")
        if answer is None:
            plain = strip_fences(re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)).strip()
            if plain and "\n" not in plain and len(plain) <= 200 and "<" not in plain:
                answer = plain
        if answer is None:
            return OperatorResult(output=previous, error="no <answer> tag in the reply")
        return OperatorResult(output=answer)

    @staticmethod
    def _code(text: str, previous: str, entry_point: str | None) -> OperatorResult:
        code = extract_code(text)
        if code is not None and defines_function(code, entry_point):
            return OperatorResult(output=code, data={"code": code})
        fallback = extract_code(previous)
        if fallback is not None and defines_function(fallback, entry_point):
            return OperatorResult(output=fallback, data={"code": fallback, "fallback": True})
        wanted = f" defining {entry_point}" if entry_point else ""
        return OperatorResult(output=previous, error=f"no code{wanted} in the reply")
