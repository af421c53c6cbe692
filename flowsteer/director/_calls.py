"""One director model call: messages in, a :class:`TurnRecord` out (think blocks split off)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from flowsteer.director.trajectory import TokenRecord
from flowsteer.operators.base import Usage
from flowsteer.tasks import Task

__all__ = ["split_think", "to_langchain", "CallResult", "call_model", "call_seed"]


def call_seed(seed: int, task: Task, call: int) -> int:
    """The sampler seed of one model call: a stable hash of the run's seed, the task (its id, else
    its question) and the call's index in the episode. Reproducible (same seed, task and turn: same
    sample), and different across tasks: with ``seed + call`` every episode's k-th call drew the
    same random numbers, so a whole eval repeated one sample's choice at each turn."""
    key = task.id or task.question
    digest = hashlib.blake2b(f"{seed}\x00{key}\x00{call}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**63)

_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)


def split_think(text: str) -> tuple[str | None, str, bool]:
    """``(thinking, visible, unterminated)`` for a Qwen3-style output.

    A complete ``<think>...</think>`` block (or a lone ``</think>``, when the chat template opened the
    block in the prompt) goes to ``thinking``; what follows is ``visible``. An unterminated
    ``<think>`` leaves ``visible`` empty.
    """
    close = _THINK_CLOSE.search(text)
    opened = _THINK_OPEN.search(text)
    if close is not None and (opened is None or opened.start() < close.start()):
        start = opened.end() if opened is not None else 0
        return text[start : close.start()].strip(), text[close.end() :].strip(), False
    if opened is not None:
        before = text[: opened.start()].strip()
        return text[opened.end() :].strip(), before, True
    return None, text.strip(), False


def to_langchain(messages: list[dict[str, str]]) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for m in messages:
        match m["role"]:
            case "system":
                out.append(SystemMessage(m["content"]))
            case "assistant":
                out.append(AIMessage(m["content"]))
            case _:
                out.append(HumanMessage(m["content"]))
    return out


@dataclass(frozen=True)
class CallResult:
    raw: str
    thinking: str | None
    visible: str
    unterminated_think: bool
    usage: Usage
    tokens: TokenRecord | None
    seconds: float


async def call_model(model: BaseChatModel, messages: list[dict[str, str]], kwargs: Mapping[str, Any],
                     prompt_tokens: int) -> CallResult:
    """Call ``model`` once; usage from the reply's ``usage_metadata`` (else estimated)."""
    started = time.perf_counter()
    reply = await model.ainvoke(to_langchain(messages), **dict(kwargs))
    raw = reply.content if isinstance(reply.content, str) else str(reply.content)
    meta = getattr(reply, "usage_metadata", None) or {}
    usage = Usage(
        input_tokens=int(meta.get("input_tokens", prompt_tokens)),
        output_tokens=int(meta.get("output_tokens", max(1, len(raw) // 3) if raw else 0)),
        calls=1,
    )
    thinking, visible, unterminated = split_think(raw)
    tokens = TokenRecord.from_metadata(getattr(reply, "response_metadata", None))
    return CallResult(raw, thinking, visible, unterminated, usage, tokens, time.perf_counter() - started)
