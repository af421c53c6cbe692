"""Per-turn context assembly under a token budget.

The context is rebuilt every turn (system + task + canvas state + a one-line summary per earlier
turn + the last feedback), so it does not grow with the episode the way an accumulated chat history
would. When it would still exceed the budget, the oldest turn summaries go first, then the feedback
is cut, then the task text itself is shortened in the middle: a call never exceeds the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowsteer.canvas.feedback import shrink_feedback

__all__ = ["TokenCounter", "token_counter", "fit_messages", "BudgetParts", "truncate_middle", "shorter_feedback"]

TokenCounter = Callable[[list[dict[str, str]]], int]
"""Counts the tokens a list of ``{"role", "content"}`` messages takes as a model prompt."""


def token_counter(model: Any) -> TokenCounter:
    """The model's own count (chat template + tokenizer) when it has a tokenizer, else chars/3.

    chars/3 over-counts ordinary English for BPE tokenizers (about 4 chars a token), so the budget
    still holds for an unknown model.
    """
    from flowsteer.models.calls import unwrap_model

    tokenizer = getattr(unwrap_model(model), "tokenizer", None)  # a retry wrapper has none of its own
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        def count(messages: list[dict[str, str]]) -> int:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return count

    def approx(messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"]) // 3 + 4 for m in messages) + 2

    return approx


def truncate_middle(text: str, limit: int, marker: str = " [...] ") -> str:
    """``text`` cut to ``limit`` characters by dropping its middle (keeps the start and the end)."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    head = (limit - len(marker)) * 2 // 3
    tail = limit - len(marker) - head
    return text[:head] + marker + (text[-tail:] if tail > 0 else "")


@dataclass
class BudgetParts:
    """The compressible pieces of a BUILDING turn, rendered by ``render`` into messages."""

    history: list[str]
    """One line per earlier turn, oldest first."""
    feedback: str
    question: str
    omitted: int = 0
    """Earlier turns dropped from ``history`` (mentioned as a count)."""


def fit_messages(
    parts: BudgetParts,
    render: Callable[[BudgetParts], list[dict[str, str]]],
    count: TokenCounter,
    budget: int,
) -> tuple[list[dict[str, str]], int]:
    """Render ``parts`` into messages of at most ``budget`` tokens, compressing as needed.

    Returns the messages and their token count.
    """
    messages = render(parts)
    used = count(messages)
    while used > budget and parts.history:  # 1. drop the oldest turn summaries
        drop = max(1, len(parts.history) // 2)
        parts.history = parts.history[drop:]
        parts.omitted += drop
        messages = render(parts)
        used = count(messages)
    for shrink in (_shrink_feedback, _shrink_question):  # 2. cut the feedback, 3. the task
        while used > budget:
            if not shrink(parts, used, budget):
                break
            messages = render(parts)
            used = count(messages)
    if used > budget:
        messages = _hard_cut(messages, count, budget)
        used = count(messages)
    return messages, used


def _ratio_cut(text: str, used: int, budget: int) -> int:
    over = used - budget
    # tokens -> characters at a pessimistic 2 chars/token, plus a margin so it converges fast
    return max(0, len(text) - 2 * over - 64)


def shorter_feedback(text: str, limit: int) -> str:
    """A canvas feedback block cut to ``limit`` characters keeping its section headers, the current
    DSL and the round longest (any other text: its middle dropped)."""
    shrunk = shrink_feedback(text, limit)
    return truncate_middle(text, limit) if shrunk is None else shrunk


def _shrink_feedback(parts: BudgetParts, used: int, budget: int) -> bool:
    if len(parts.feedback) <= 40:
        return False
    shorter = shorter_feedback(parts.feedback, _ratio_cut(parts.feedback, used, budget))
    if len(shorter) >= len(parts.feedback):
        return False
    parts.feedback = shorter
    return True


def _shrink_question(parts: BudgetParts, used: int, budget: int) -> bool:
    if len(parts.question) <= 200:
        return False
    parts.question = truncate_middle(parts.question, max(200, _ratio_cut(parts.question, used, budget)))
    return True


def _hard_cut(messages: Sequence[dict[str, str]], count: TokenCounter, budget: int) -> list[dict[str, str]]:
    """Last resort: cut the longest message until it fits (a turn's, never the system prompt
    while another message is left to cut: the director fits its system prompt to the budget)."""
    out = [dict(m) for m in messages]
    for _ in range(64):
        used = count(out)
        if used <= budget:
            break
        cuttable = [m for m in out if m["role"] != "system" and len(m["content"]) > 40] or out
        longest = max(cuttable, key=lambda m: len(m["content"]))
        longest["content"] = truncate_middle(longest["content"], _ratio_cut(longest["content"], used, budget))
    return out
