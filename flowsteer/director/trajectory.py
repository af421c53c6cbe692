"""What one director episode leaves behind: every call the model made, and the outcome."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from flowsteer.canvas.actions import Action, render_action
from flowsteer.errors import ParseFailure
from flowsteer.operators.base import Usage
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import ExecutionResult
from flowsteer.workflow.ir import Workflow

__all__ = ["TokenRecord", "TurnRecord", "Trajectory", "TurnKind"]

TurnKind = Literal["action", "prompt", "repair"]


@dataclass(frozen=True)
class TokenRecord:
    """The tokens one model call saw and sampled (only when the engine reports them)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    """Log-probability of each completion token under the distribution it was sampled from."""
    constraint: dict[str, Any] | None = None
    """The grammar the call was decoded under (None: unconstrained): ``{"grammar": ActionGrammar
    JSON, "eos_ids": [...] | None, "max_new_tokens": int | None}``. The trainer replays it to
    recompute the log-probs of the masked, renormalised distribution the tokens were drawn from."""

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> TokenRecord | None:
        """Read ``response_metadata["flowsteer_tokens"]`` (None when the model does not report it)."""
        tokens = (metadata or {}).get("flowsteer_tokens")
        if not tokens:
            return None
        return cls(list(tokens["prompt_ids"]), list(tokens["completion_ids"]), list(tokens["logprobs"]))


@dataclass(frozen=True)
class TurnRecord:
    """One director model call and what became of it."""

    index: int
    """The canvas turn (1-based) this call belongs to; a repair shares its turn's index."""
    messages: list[dict[str, str]]
    """Exactly what the model saw (role/content)."""
    raw_output: str
    thinking: str | None
    """The ``<think>`` text, kept out of the canvas."""
    action: Action | None
    parse_failure: ParseFailure | None
    feedback: str
    """The canvas feedback after this call ("" when the output was not sent: a repaired attempt)."""
    usage: Usage
    state: str
    """Canvas state when the call was made: ``"building"`` or ``"awaiting_prompt"``."""
    tokens: TokenRecord | None = None
    kind: TurnKind = "action"
    sent: bool = True
    """Whether this output was given to the canvas (False for an attempt a repair replaced)."""
    accepted: bool = False
    """Whether the canvas accepted the resulting step."""
    context_tokens: int = 0
    """Size of ``messages`` in tokens (the model's tokenizer when known, else chars/3)."""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: the action (or prompt gist) and its verdict."""
        if self.kind == "prompt" or self.state == "awaiting_prompt":
            what = "prompt: " + _gist(self.raw_output if self.thinking is None else _without_think(self))
        elif self.action is not None:
            what = render_action(self.action)
        else:
            what = "invalid: " + _gist(self.parse_failure.message if self.parse_failure else self.raw_output)
        return f"{what} -> {'accepted' if self.accepted else 'rejected'}"


def _without_think(record: TurnRecord) -> str:
    return record.raw_output.split("</think>")[-1]


def _gist(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class Trajectory:
    """One episode: the task, every director call, the final workflow and its answer."""

    task: Task
    turns: list[TurnRecord]
    workflow: Workflow
    """The workflow that produced ``answer`` (the fallback template when ``fallback`` is set)."""
    answer: str
    stop_reason: str
    """``"finish"``, ``"max_turns"``, ``"error"`` (a director call raised) or the canvas's own reason."""
    execution: ExecutionResult | None
    usage: Usage
    """Director tokens over all calls (thinking and repairs included)."""
    fallback: str | None = None
    """Set when a fallback template produced the answer: which one, and why."""
    executor_usage: Usage = Usage()
    """Executor tokens spent by the canvas executions and the fallback run."""
    max_context_tokens: int = 0
    """The largest context any director call of the episode saw."""
    designed: Workflow | None = None
    """The workflow the director left on the canvas (differs from ``workflow`` after a fallback)."""
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why the episode stopped when ``stop_reason`` is ``"error"``: the director call's exception."""

    @property
    def finished(self) -> bool:
        return self.stop_reason == "finish"

    @property
    def valid_action_rate(self) -> float:
        """Share of BUILDING-turn outputs (repairs included) that parsed to an action."""
        calls = [t for t in self.turns if t.state == "building"]
        return sum(t.action is not None for t in calls) / len(calls) if calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (actions rendered as their XML, workflows as DSL)."""
        return {
            "task": {"question": self.task.question, "kind": self.task.kind, "id": self.task.id},
            "turns": [_turn_dict(t) for t in self.turns],
            "workflow": self.workflow.dsl,
            "designed": self.designed.dsl if self.designed is not None else self.workflow.dsl,
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "fallback": self.fallback,
            "execution_error": self.execution.error if self.execution else None,
            "usage": dataclasses.asdict(self.usage),
            "executor_usage": dataclasses.asdict(self.executor_usage),
            "max_context_tokens": self.max_context_tokens,
            "seconds": round(self.seconds, 3),
            "meta": self.meta,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)


def _turn_dict(t: TurnRecord) -> dict[str, Any]:
    return {
        "index": t.index, "kind": t.kind, "state": t.state, "sent": t.sent, "accepted": t.accepted,
        "messages": t.messages, "raw_output": t.raw_output, "thinking": t.thinking,
        "action": render_action(t.action) if t.action is not None else None,
        "parse_failure": t.parse_failure.message if t.parse_failure else None,
        "feedback": t.feedback, "usage": dataclasses.asdict(t.usage),
        "context_tokens": t.context_tokens, "seconds": round(t.seconds, 3),
        "tokens": dataclasses.asdict(t.tokens) if t.tokens else None,
    }
