"""A small LaTeX -> sympy converter and an equivalence test, for final answers only.

sympy's ``parse_latex`` needs the antlr4 runtime (not a dependency), and final answers use a tiny
subset of LaTeX anyway: fractions, roots, pi, infinity, powers, products and a few functions. The
converter produces a Python expression string, refuses anything outside a whitelist (model output
is untrusted and ``parse_expr`` evaluates Python), and refuses expressions that would be expensive
to evaluate (huge powers).
"""

from __future__ import annotations

import cmath
import re
import string
from typing import Any

__all__ = ["latex_to_python", "latex_to_sympy", "sympy_equal"]

_SIMPLE = {
    "pi": "pi", "infty": "oo", "infinity": "oo", "cdot": "*", "times": "*", "div": "/",
    "ast": "*", "le": None, "ge": None,
}
_FUNCS = {"sin": "sin", "cos": "cos", "tan": "tan", "ln": "log", "log": "log", "exp": "exp",
          "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sec": "sec", "csc": "csc", "cot": "cot"}
_ALLOWED_NAMES = frozenset(set(_FUNCS.values()) | {"sqrt", "pi", "oo"})
_SAFE_CHARS = re.compile(r"[0-9A-Za-z+\-*/().\s]*")
_MAX_LEN = 200
_SAMPLE_POINTS = (0.5772156649, 1.4142135624, 2.7182818285)


def _group(s: str, i: int) -> tuple[str, int] | None:
    """Read one argument at ``i``: a ``{...}`` group, a ``\\command`` or a single character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1 : j], j + 1
        return None
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        if m:
            return m.group(0), i + len(m.group(0))
        return None
    return s[i], i + 1


def latex_to_python(s: str) -> str | None:
    """Translate a final-answer LaTeX string to a sympy-parsable Python expression (None if unsupported)."""
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+)", s[i:])
            if not m:
                return None
            name = m.group(1)
            i += len(m.group(0))
            piece, i = _command(name, s, i)
            if piece is None:
                return None
            out.append(piece)
        elif c in "{}":
            out.append("(" if c == "{" else ")")
            i += 1
        elif c == "^":
            out.append("**")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _command(name: str, s: str, i: int) -> tuple[str | None, int]:
    if name == "frac":
        a, b = _group(s, i), None
        if a is not None:
            b = _group(s, a[1])
        if a is None or b is None:
            return None, i
        num, den = latex_to_python(a[0]), latex_to_python(b[0])
        if num is None or den is None:
            return None, i
        return f"(({num})/({den}))", b[1]
    if name == "sqrt":
        index = None
        if i < len(s) and s[i] == "[":
            close = s.find("]", i)
            if close < 0:
                return None, i
            index, i = latex_to_python(s[i + 1 : close]), close + 1
        arg = _group(s, i)
        inner = latex_to_python(arg[0]) if arg else None
        if arg is None or inner is None:
            return None, i
        if index is None:
            return f"sqrt({inner})", arg[1]
        return f"(({inner})**(1/({index})))", arg[1]
    if name in _FUNCS:
        return f" {_FUNCS[name]}", i
    if name in _SIMPLE and _SIMPLE[name] is not None:
        return f" {_SIMPLE[name]} ", i
    return None, i


def _is_safe(expr: str) -> bool:
    if len(expr) > _MAX_LEN or not _SAFE_CHARS.fullmatch(expr) or not expr.strip():
        return False
    for name in re.findall(r"[A-Za-z_]+", expr):
        if name not in _ALLOWED_NAMES and len(name) != 1:
            return False
    if expr.count("**") > 3 or re.search(r"\*\*\s*\(*\s*\d{4,}", expr) or re.search(r"\d{40,}", expr):
        return False
    return not any(_power_tower(expr, m.end()) for m in re.finditer(r"\*\*", expr))


def _power_tower(expr: str, start: int) -> bool:
    """True when the exponent starting at ``start`` itself holds a power (``2**(10**10)``, ``9**9**9``):
    such towers can take sympy minutes to evaluate."""
    rest = expr[start:].lstrip()
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                return "**" in rest[:i] or rest[i + 1 :].lstrip().startswith("**")
        return True
    operand = re.match(r"[\w.]+", rest)
    return operand is not None and rest[operand.end() :].lstrip().startswith("**")


def latex_to_sympy(s: str) -> Any | None:
    """A sympy expression for a LaTeX final answer, or None when it cannot be read safely."""
    expr = latex_to_python(s)
    if expr is None or not _is_safe(expr):
        return None
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    local = {letter: sympy.Symbol(letter) for letter in string.ascii_letters}
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    try:
        result = parse_expr(expr, local_dict=local, transformations=transformations)
    except Exception:  # untrusted text: any parse failure simply means "not an expression"
        return None
    return result if isinstance(result, sympy.Basic) else None


def sympy_equal(a: Any, b: Any, rel_tol: float) -> bool:
    """Symbolic equivalence: simplify(a - b) == 0, else agreement at a few sample points."""
    import sympy

    try:
        diff = a - b
        if diff == 0:
            return True
        if sympy.count_ops(diff) <= 60 and sympy.simplify(diff) == 0:
            return True
        symbols = sorted(diff.free_symbols, key=str)  # distinct values per symbol: x must differ from y
        points = [{sym: v + 0.731 * j for j, sym in enumerate(symbols)} for v in _SAMPLE_POINTS] or [{}]
        for point in points:
            av = complex(sympy.N(a.subs(point)))
            bv = complex(sympy.N(b.subs(point)))
            if not cmath.isclose(av, bv, rel_tol=rel_tol, abs_tol=1e-9):
                return False
        return True
    except Exception:  # evaluation of arbitrary expressions can fail many ways; that is "not equal"
        return False
