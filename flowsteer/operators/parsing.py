"""Tolerant extraction of fields from model text.

Executor models are asked to answer inside XML-like tags (``<answer>``, ``<verdict>``, ``<code>``)
but small models close tags late, change case, wrap code in Markdown fences or forget the tags.
These helpers accept all of that and return ``None`` when a field is really absent, so each operator
can turn a missing field into ``OperatorResult(error=...)`` instead of raising.
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache

from flowsteer.operators.base import Value

__all__ = [
    "extract_tag",
    "extract_code",
    "parse_verdict",
    "parse_confidence",
    "parse_items",
    "parse_number",
    "parse_choice",
    "candidates",
    "primary",
    "strip_fences",
    "answer_key",
]

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_PASS_WORDS = ("pass", "passed", "true", "yes", "correct", "right", "valid", "ok")
_FAIL_WORDS = ("fail", "failed", "false", "no", "not", "incorrect", "wrong", "invalid")


def _without_thinking(text: str) -> str:
    return _THINK_RE.sub("", text)


def extract_tag(text: str, tag: str) -> str | None:
    """Content of the last ``<tag>...</tag>`` (case-insensitive), stripped.

    An opened but never closed tag yields everything after it up to the next opening tag; an empty
    tag yields ``None``.
    """
    text = _without_thinking(text)
    closed = re.findall(rf"<{tag}\s*>(.*?)</{tag}\s*>", text, flags=re.DOTALL | re.IGNORECASE)
    if closed:
        value = closed[-1].strip()
        return value or None
    opened = re.search(rf"<{tag}\s*>(.*)$", text, flags=re.DOTALL | re.IGNORECASE)
    if opened is None:
        return None
    rest = re.split(r"<[A-Za-z_]+\s*>", opened.group(1), maxsplit=1)[0].strip()
    return rest or None


def strip_fences(text: str) -> str:
    """``text`` without a surrounding Markdown code fence."""
    match = _FENCE_RE.search(text)
    if match and text.strip().startswith("```"):
        return match.group(2).strip("\n")
    return text.strip()


def extract_code(text: str) -> str | None:
    """Python code from model text: a ``<code>`` tag, else the longest fenced block, else
    the whole text when it already looks like a program; ``None`` otherwise."""
    tagged = extract_tag(text, "code")
    if tagged:
        return strip_fences(tagged)
    text = _without_thinking(text)
    blocks = [(lang.lower(), body) for lang, body in _FENCE_RE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    if python:
        return max(python, key=len).strip("\n")
    stripped = text.strip()
    if re.search(r"^\s*(def |class |import |from \w+ import )", stripped, flags=re.MULTILINE):
        return stripped
    return None


def parse_verdict(text: str) -> bool | None:
    """The checker verdict in ``<verdict>`` (pass/fail, true/false, yes/no, correct/incorrect)."""
    raw = extract_tag(text, "verdict")
    if raw is None:
        return None
    word = re.sub(r"[^a-z ]", " ", raw.lower()).split()
    if not word:
        return None
    if word[0] in _FAIL_WORDS:
        return False
    if word[0] in _PASS_WORDS:
        return True
    return None


def parse_confidence(text: str) -> str:
    """``high`` / ``medium`` / ``low`` from ``<confidence>``; ``medium`` when missing or odd."""
    raw = (extract_tag(text, "confidence") or "").lower()
    for level in ("high", "medium", "low"):
        if level in raw:
            return level
    return "medium"


def parse_items(text: str) -> list[str]:
    """Numbered or bulleted lines as a list (``1. a``, ``2) b``, ``- c``); plain lines otherwise."""
    items: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        items.append(re.sub(r"^(?:\d+[.)]|[-*•]|step\s*\d+\s*[:.)])\s*", "", line, flags=re.IGNORECASE))
    return [item for item in items if item]


def parse_number(text: str) -> Fraction | None:
    """``text`` as an exact number when it is a plain number (``42``, ``-3.5``, ``1,200``, ``3/4``,
    ``$12``, ``50%``); ``None`` for anything else."""
    cleaned = text.strip().strip("$").replace(",", "").rstrip(".").strip()
    cleaned = cleaned.removeprefix("\\boxed{").removesuffix("}") if cleaned.startswith("\\boxed{") else cleaned
    cleaned = cleaned.rstrip("%").strip()
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)(/\d+)?", cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def parse_choice(text: str, count: int) -> int | None:
    """0-based index of the candidate letter chosen in ``<choice>`` (A, B, ...), or ``None``."""
    raw = extract_tag(text, "choice")
    if raw is None:
        return None
    match = re.search(r"\b([A-Za-z])\b", raw) or re.match(r"\s*([A-Za-z])", raw)
    if match is None:
        return None
    index = ord(match.group(1).upper()) - ord("A")
    return index if 0 <= index < count else None


def candidates(value: Value) -> tuple[str, ...]:
    """The candidate texts in a step value: a tuple's items, one string, or nothing."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(v for v in value if v is not None)


def primary(value: Value) -> str:
    """One text for a value: the string itself or the most common candidate of a tuple."""
    options = candidates(value)
    if not options:
        return ""
    counts = Counter(o.strip() for o in options)
    best = max(counts.values())
    return next(o for o in options if counts[o.strip()] == best)


@lru_cache(maxsize=1024)  # votes and checks key the same few answers over and over
def answer_key(text: str) -> str:
    """A comparison key for short answers: exact numbers compare by value (``42.0`` = ``42``,
    ``1,200`` = ``1200``), other text case- and punctuation-insensitively."""
    number = parse_number(text)
    if number is not None:
        return f"#{number}"
    return " ".join(re.sub(r"[^\w.+\-*/^=]", " ", text.lower()).split()).strip(". ")
