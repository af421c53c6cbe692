"""A griffe extension for the API reference: FlowSteer docstrings use reST habits; mkdocs renders Markdown.

Before the docstrings are rendered it rewrites, outside fenced blocks:

* doctest lines (``>>> ...`` and their ``...`` continuations/output) into fenced ``pycon`` blocks, with
  ``# doctest: +SKIP`` flags dropped (Markdown would otherwise read ``>>>`` as nested quotes);
* Sphinx roles (:class:`~flowsteer.x.Name`, :func:`name`...) into optional cross-references, which
  link when the target is documented and stay plain code otherwise (no broken-link warning).

Loaded by mkdocs.yml (``extensions: [scripts/griffe_rst.py]``); not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(\(\))?`")
_FLAG = re.compile(r"\s*#\s*doctest:.*$")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    title += match.group(3) or ""
    if not target.startswith("flowsteer."):
        return f"`{title}`"
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


def _doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    in_example = in_fence = False
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and stripped.startswith(">>>"):
            if not in_example:
                indent = line[: len(line) - len(stripped)]
                out += ["", f"{indent}```pycon"]
                in_example = True
            out.append(_FLAG.sub("", line))
            continue
        if in_example and stripped:  # continuation lines and expected output stay in the block
            out.append(_FLAG.sub("", line))
            continue
        if in_example:
            out += [f"{indent}```", ""]
            in_example = False
        out.append(line)
    if in_example:
        out.append(f"{indent}```")
    return out


def rewrite(text: str) -> str:
    """The Markdown-friendly form of one reST-flavoured docstring."""
    lines = _doctests(text.splitlines())
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines[i] = _ROLE.sub(_role, line)
    return "\n".join(lines)


class ReSTDocstrings(griffe.Extension):
    """Rewrite every docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
