"""The building blocks of a report page: escaping, tables, embedded images, the page template.

The run-specific pages (:mod:`.evaluation`, :mod:`.training`) are made of these; :mod:`.html`
detects the run type and assembles the file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib.resources
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from string import Template

from flowsteer.errors import UserError

__all__ = ["Page", "esc", "table", "cards", "png_data_uri", "render_page"]


@dataclass(frozen=True)
class Page:
    """The parts of a report before they are poured into the page template."""

    title: str
    subtitle: str
    sections: tuple[str, ...]
    """HTML fragments, one ``<section>`` each."""


def esc(value: object) -> str:
    """HTML-escape ``str(value)`` (quotes included)."""
    return escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Iterable[int] = (),
          raw: Iterable[int] = (), css: str = "") -> str:
    """An HTML table; columns in ``numeric`` are right-aligned, cells in ``raw`` columns are HTML.

    ``css`` is the table's class (``compact``: cells never wrap).
    """
    right, html_cols = set(numeric), set(raw)
    num = ' class="num"'
    head = "".join(f"<th{num if i in right else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = "".join(
            f"<td{num if i in right else ''}>{cell if i in html_cols else esc(cell)}</td>"
            for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    opening = f"<table class='{esc(css)}'>" if css else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def cards(figures: Iterable[tuple[str, str]]) -> str:
    """The overview row of figure cards: ``(value, label)`` each."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>'
        for v, k in figures) + "</div>"


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png;base64,...`` URI (refuses bytes that are not a PNG)."""
    if not data.startswith(b"\x89PNG"):
        raise UserError("expected PNG bytes for an embedded image")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _template(name: str) -> str:
    return (importlib.resources.files("flowsteer.report") / "templates" / name).read_text(encoding="utf-8")


def render_page(page: Page) -> str:
    """The complete HTML document of ``page``."""
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Template(_template("page.txt")).substitute(
        title=esc(page.title), subtitle=esc(page.subtitle), style=_template("style.txt"),
        body="\n".join(page.sections), generated=generated)
