"""The action grammar as one regular expression, for engines with server-side structured outputs.

vLLM (and other OpenAI-compatible servers built on xgrammar or outlines) constrain decoding to a
regex passed as ``extra_body={"structured_outputs": {"regex": ...}}``; the older ``guided_regex``
field is silently ignored by current vLLM, so :func:`structured_outputs_body` uses the new one.

The grammar is acyclic and its builder funnels every alternative of a slot into one state, so
grouping edges by their target keeps the expression linear in the grammar's size. Free text
becomes a bounded character class (``[^<]{0,N}``, about ``chars_per_token`` characters a token):
servers count characters, not tokens.
"""

from __future__ import annotations

from typing import Any

from flowsteer.constrain.grammar import ActionGrammar, FreeText

__all__ = ["to_regex", "structured_outputs_body"]

_SPECIAL = set("\\.^$*+?{}[]()|/")


def _escape(text: str) -> str:
    """Escape regex metacharacters only (``re.escape`` also escapes spaces, which some engines reject)."""
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in text)


def _char_class(forbid: str) -> str:
    inner = "".join("\\" + ch if ch in "\\]^-[" else ch for ch in forbid)
    return f"[^{inner}]" if inner else "(.|\\n)"


def _free(free: FreeText, chars_per_token: int) -> str:
    low = free.min_tokens
    high = max(low, free.max_tokens * chars_per_token)
    return f"{_char_class(free.forbid)}{{{low},{high}}}"


def to_regex(grammar: ActionGrammar, *, chars_per_token: int = 6) -> str:
    """A regex matching exactly the grammar's outputs (free text bounded in characters)."""
    memo: dict[int, str] = {}

    def render(state: int) -> str:
        if state in memo:
            return memo[state]
        node = grammar.states[state]
        by_target: dict[int, list[str]] = {}
        for edge in node.edges:
            by_target.setdefault(edge.to, []).append(_escape(edge.text))
        options = []
        for target, texts in by_target.items():
            head = texts[0] if len(texts) == 1 else "(" + "|".join(texts) + ")"
            options.append(head + render(target))
        if node.accept and options:
            options.append("")
        body = options[0] if len(options) == 1 else ("(" + "|".join(options) + ")" if options else "")
        out = (_free(node.free, chars_per_token) if node.free is not None else "") + body
        memo[state] = out
        return out

    return render(grammar.start)


def structured_outputs_body(grammar: ActionGrammar, *, chars_per_token: int = 6) -> dict[str, Any]:
    """``extra_body`` for an OpenAI-compatible vLLM call constrained to ``grammar``."""
    return {"structured_outputs": {"regex": to_regex(grammar, chars_per_token=chars_per_token)}}
