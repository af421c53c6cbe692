"""Deterministic toy operators for the LangGraph compiler tests (shared by tests/test_lg_*.py).

Solvers ask the executor model (a ScriptedChatModel whose reply is a hash of the prompt), so the
model path runs through LangGraph's config; checkers decide from a hash of their input, so verdicts
pass, fail or stay undecided depending on the data and both routes of every structure get used.
"""

from __future__ import annotations

import hashlib

from langchain_core.messages import HumanMessage

from flowsteer.operators.base import Operator, OperatorCall, OperatorResult, Role
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec
from flowsteer.testing.fakes import ScriptedChatModel

ROLES = {
    "Plan": Role.PLANNING, "Decompose": Role.PLANNING,
    "Programmer": Role.SOLVING, "Custom": Role.SOLVING, "AnswerGenerate": Role.SOLVING,
    "Test": Role.CHECKING, "Review": Role.CHECKING, "Verify": Role.CHECKING,
    "Revise": Role.REVISING, "ScEnsemble": Role.ENSEMBLING, "Aggregate": Role.ENSEMBLING,
    "Format": Role.FORMATTING,
    # user-registered operators: the compiler must treat them like built-ins of their role
    "Critic": Role.CHECKING, "Summarise": Role.SOLVING,
}


def digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:8]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return " | ".join(value)  # type: ignore[arg-type]


class ToyOperator(Operator):
    """A deterministic operator whose output depends on everything it receives."""

    role: Role = Role.SOLVING

    async def arun(self, call: OperatorCall, config=None) -> OperatorResult:
        seen = (self.name, call.prompt, _text(call.input), call.feedback, call.task.question)
        if self.role is Role.CHECKING:
            score = int(digest(*seen), 16) % 5
            verdict = True if score < 2 else (False if score < 4 else None)
            return OperatorResult(output=_text(call.input) or "(nothing)", verdict=verdict,
                                  feedback=f"{self.name}:{digest(*seen)[:4]}:{verdict}")
        if self.role is Role.ENSEMBLING and isinstance(call.input, tuple):
            return OperatorResult(output=sorted(call.input)[0] if call.input else "")
        reply = await self.context.model.ainvoke([HumanMessage(content=repr(seen))], config)
        return OperatorResult(output=f"{self.name}[{reply.content}]")


def toy_registry() -> OperatorRegistry:
    def factory(name: str, role: Role):
        def make(ctx):
            op = ToyOperator(ctx)
            op.name, op.role = name, role
            return op
        return make

    return OperatorRegistry([OperatorSpec(n, r, f"toy {n}", factory(n, r)) for n, r in ROLES.items()])


def toy_executor(latency: float = 0.0) -> ScriptedChatModel:
    """Replies with a hash of the last message: deterministic, order-independent."""
    return ScriptedChatModel(default=lambda messages: digest(messages[-1].content), latency=latency)
