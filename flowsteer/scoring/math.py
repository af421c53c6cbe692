"""Math answers: extraction, LaTeX normalisation and equivalence (numeric, symbolic, tuples).

Deterministic and judge-free. ``math_equal(pred, gold)`` compares two final answers;
``extract_answer(text)`` pulls the final answer out of a worked solution (last ``\\boxed{}``, then
``####``, then "the answer is", then the whole text if it is itself a math expression, else the last
number). The prediction is always *extracted*, never searched: a wrong answer that merely contains
the gold number ("142" for 42) does not score.

Symbolic equivalence uses sympy on expressions converted from LaTeX by :mod:`._latex` (sympy's own
LaTeX parser needs antlr4, which is not a dependency).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Mapping
from fractions import Fraction

from flowsteer.scoring._latex import latex_to_sympy, sympy_equal
from flowsteer.scoring.base import Score
from flowsteer.tasks import Task

__all__ = [
    "extract_boxed",
    "extract_answer",
    "normalize_math",
    "math_equal",
    "answer_matches",
    "extract_choice",
    "score_math",
    "score_choice",
]

REL_TOL = 1e-4
"""Relative tolerance for non-integer numeric answers (integers must match exactly)."""

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)(?:\.\s*$|\.\s+\S|\n|$)",
    re.IGNORECASE,
)


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces handled), or None."""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*", text)]
    for m in reversed(starts):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j].strip()
        else:  # "\boxed 5"
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in ``text`` (see module doc for the order of rules), or None."""
    if not text or not text.strip():
        return None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0].strip() if tail else None
    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        return matches[-1].group(1).strip().rstrip(".").strip()
    stripped = text.strip()
    if _is_expression(stripped):
        return stripped
    numbers = re.findall(_NUMBER, stripped)
    return numbers[-1] if numbers else None


def _is_expression(text: str) -> bool:
    """True when the whole text reads as a final answer rather than prose."""
    norm, _ = normalize_math(text)
    if _parse_number(norm) is not None:
        return True
    if len(text) > 80 or re.search(r"[A-Za-z]{4,}", re.sub(r"\\[A-Za-z]+", "", text)):
        return False
    return latex_to_sympy(norm) is not None or len(_split_top_level(norm)[1]) > 1


_REMOVE = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "\\$", "$", "~")


def normalize_math(text: str) -> tuple[str, bool]:
    """Canonical string form of a final answer and whether it carried a percent sign."""
    s = text.strip()
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s).strip()
    for token in _REMOVE:
        s = s.replace(token, "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox|mathbf|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree", "", s)
    percent = bool(re.search(r"\\?%|\\percent", s))
    s = re.sub(r"\\?%|\\percent", "", s)
    s = s.replace("{,}", ",")
    s = re.sub(r"\\(frac|sqrt)\s*(\d)(\d)?", lambda m: _brace_shorthand(m), s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    if s.count("=") == 1 and re.match(r"^\s*[A-Za-z]\w*\s*=", s):
        s = s.split("=", 1)[1].strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    unit = re.fullmatch(r"(-?[\d.,/]+)\s*(?:[A-Za-z]+\.?\s*){1,3}", s)
    if unit and _parse_number(unit.group(1).replace(",", "")) is not None:
        s = unit.group(1).replace(",", "")
    s = s.replace(" ", "")
    letter = re.fullmatch(r"\(([A-Za-z])\)", s)  # "\text{(C)}" and "C" name the same choice
    return (letter.group(1) if letter else s), percent


def _brace_shorthand(m: re.Match[str]) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``."""
    if m.group(1) == "frac" and m.group(3):
        return f"\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    return f"\\{m.group(1)}{{{m.group(2)}}}" + (m.group(3) or "")


def _parse_number(s: str) -> Fraction | None:
    """An exact number from ``12``, ``-0.5``, ``3/4``, ``1e3`` or ``\\frac{3}{4}``; None otherwise."""
    frac = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if frac:
        s = f"{frac.group(1)}{frac.group(2)}/{frac.group(3)}"
    if not re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:/[-+]?\d+)?", s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers_equal(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=1e-12)


_BRACKETS = {"(": ")", "[": "]", "\\{": "\\}"}


def _split_top_level(s: str) -> tuple[str, list[str]]:
    """Split ``(a,b)`` / ``[a,b)`` / ``\\{a,b\\}`` / ``a,b`` into (bracket pair, parts)."""
    pair = ""
    inner = s
    for left in ("(", "[", "\\{"):
        if s.startswith(left) and (s.endswith(")") or s.endswith("]") or s.endswith("\\}")):
            right = ")" if s.endswith(")") else "]" if s.endswith("]") else "\\}"
            pair, inner = left + right, s[len(left) : len(s) - len(right)]
            break
    parts, depth, current = [], 0, ""
    for ch in inner:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    if depth != 0:
        return "", [s]
    if len(parts) == 1 and pair:
        return "", [s]  # "(5)" is a parenthesised scalar, not a tuple
    return pair, parts


class _NoTimeoutNotice(logging.Filter):
    """Drops math-verify's notice that its signal timeouts are off (we turn them off on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


@functools.cache
def _quiet_math_verify() -> None:
    """Once per process (graders call it per answer)."""
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NoTimeoutNotice())


def answer_matches(text: str, gold: str) -> bool:
    """Whether the answer in ``text`` equals ``gold``: the built-in checker (:func:`extract_answer`
    and :func:`math_equal`), and math-verify for what it does not accept.

    Chosen by ``benchmarks/bench_math_checker.py`` (4649 pairs from MATH-500, MATH and AIME 2025):
    recall 1.000 against 0.992 (built-in) and 0.997 (math-verify alone), with the built-in
    checker's false-positive rate (0.20%). math-verify reads text answers, base subscripts and
    polynomials the built-in checker misses; the built-in one reads currency amounts, unordered
    lists and rounded decimals math-verify refuses.
    """
    if not text or not text.strip() or not gold or not gold.strip():
        return False
    if math_equal(extract_answer(text), gold):
        return True
    try:
        from math_verify import parse, verify
    except ImportError:  # optional in minimal installs: the built-in checker alone decides
        return False
    _quiet_math_verify()
    try:
        # no signal-based timeouts: graders run in worker threads too (signals are main-thread only)
        gold_parsed = parse(gold if "$" in gold else f"${gold}$", parsing_timeout=None)  # type: ignore[arg-type]
        text_parsed = parse(text if "$" in text or "\\boxed" in text else f"${text.strip()}$",
                            parsing_timeout=None)  # type: ignore[arg-type]
        return bool(gold_parsed and text_parsed and verify(gold_parsed, text_parsed, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - math-verify failing on odd input is a no, never a crash
        return False


def math_equal(pred: str | None, gold: str | None, *, rel_tol: float = REL_TOL) -> bool:
    """True when two final answers denote the same value (see module doc)."""
    if pred is None or gold is None or not pred.strip() or not gold.strip():
        return False
    p, p_pct = normalize_math(pred)
    g, g_pct = normalize_math(gold)
    if p == g and p_pct == g_pct:
        return True
    p_pair, p_parts = _split_top_level(p)
    g_pair, g_parts = _split_top_level(g)
    if len(p_parts) > 1 or len(g_parts) > 1:
        return _sequences_equal(p_pair, p_parts, g_pair, g_parts, rel_tol)
    return _scalars_equal(p, p_pct, g, g_pct, rel_tol)


def _sequences_equal(p_pair: str, p_parts: list[str], g_pair: str, g_parts: list[str], rel_tol: float) -> bool:
    if len(p_parts) != len(g_parts):
        return False
    if p_pair and g_pair and p_pair != g_pair:
        return False  # [1,2) is not (1,2)
    if p_pair or g_pair:
        return all(math_equal(a, b, rel_tol=rel_tol) for a, b in zip(p_parts, g_parts, strict=True))
    remaining = list(g_parts)  # bare lists ("-2, 1") are answers "in any order"
    for part in p_parts:
        hit = next((i for i, g in enumerate(remaining) if math_equal(part, g, rel_tol=rel_tol)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def _scalars_equal(p: str, p_pct: bool, g: str, g_pct: bool, rel_tol: float) -> bool:
    pn, gn = _parse_number(p), _parse_number(g)
    if pn is not None and gn is not None:
        if _numbers_equal(pn, gn, rel_tol):
            return p_pct == g_pct or not (p_pct or g_pct) or _percent_equal(pn, p_pct, gn, g_pct, rel_tol)
        return p_pct != g_pct and _percent_equal(pn, p_pct, gn, g_pct, rel_tol)
    pe, ge = latex_to_sympy(p), latex_to_sympy(g)
    if pe is None or ge is None:
        return False
    if p_pct != g_pct:
        scale = 100 if p_pct else 1
        return sympy_equal(pe / scale, ge / (100 if g_pct else 1), rel_tol) or sympy_equal(pe, ge, rel_tol)
    return sympy_equal(pe, ge, rel_tol)


def _percent_equal(pn: Fraction, p_pct: bool, gn: Fraction, g_pct: bool, rel_tol: float) -> bool:
    """``50%`` equals ``0.5`` and ``50``; without a percent sign on either side nothing is scaled."""
    pv = pn / 100 if p_pct else pn
    gv = gn / 100 if g_pct else gn
    return _numbers_equal(pv, gv, rel_tol) or _numbers_equal(pn, gn, rel_tol)


_CHOICE_PATTERNS = (
    re.compile(r"^\s*\(?([a-e])\s*[).:]?\s*$", re.IGNORECASE),
    re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?\(?([a-e])\b\s*\)?", re.IGNORECASE),
    re.compile(r"option\s*\(?([a-e])\b", re.IGNORECASE),
    re.compile(r"\(([a-e])\)", re.IGNORECASE),
    re.compile(r"\b([a-e])\s*\)", re.IGNORECASE),
)


def extract_choice(text: str, choices: Mapping[str, str]) -> str | None:
    """The option letter an answer picks: a letter it names, else the one option whose value it gives."""
    boxed = extract_boxed(text)
    candidates = [boxed, text] if boxed else [text]
    for candidate in candidates:
        for pattern in _CHOICE_PATTERNS:
            found = pattern.findall(candidate)
            if found and found[-1].lower() in choices:
                return found[-1].lower()
    value = extract_answer(text)
    hits = [letter for letter, option in choices.items() if math_equal(value, option)]
    return hits[0] if len(hits) == 1 else None


def score_math(task: Task, answer: str) -> Score:
    """1.0 when the extracted answer equals any gold variant (or, for multiple choice, the gold letter)."""
    if task.meta.get("choices"):
        return score_choice(task, answer)
    predicted = extract_answer(answer or "")
    for gold in task.golds:
        gold_answer = extract_boxed(gold) or gold
        if answer_matches(answer or "", gold_answer):
            return Score(1.0, True, {"extracted": predicted, "gold": gold_answer})
    return Score(0.0, False, {"extracted": predicted, "gold": task.golds[0] if task.golds else None})


def score_choice(task: Task, answer: str) -> Score:
    """Multiple choice (MathQA): the picked letter must equal the gold letter."""
    choices = {str(k).lower(): str(v) for k, v in task.meta["choices"].items()}
    picked = extract_choice(answer or "", choices)
    gold = {g.strip().lower() for g in task.golds}
    ok = picked is not None and picked in gold
    return Score(1.0 if ok else 0.0, ok, {"extracted": picked, "gold": sorted(gold)})
