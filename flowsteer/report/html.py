"""Assemble the self-contained HTML report of a run folder (``flowsteer report RUN_DIR``).

The page is one file: inline CSS, PNG images as base64 ``data:`` URIs, workflow diagrams as inline
SVG (with their Mermaid source in a ``<details>`` block). It holds no script and refers to no URL,
so it opens offline and can be attached to an issue or mailed as is.

Run type detection: a folder with ``results.jsonl`` (written by ``flowsteer eval``) is an
evaluation run; one with ``metrics.jsonl`` or ``checkpoints/`` (written by ``flowsteer train``) is a
training run.
"""

from __future__ import annotations

import base64
import datetime as _dt
import importlib.resources
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template
from typing import Literal

from flowsteer.errors import UserError

__all__ = ["RunKind", "Page", "detect_run", "build_report", "write_report", "render_page", "table",
           "png_data_uri", "esc", "REPORT_FILE"]

RunKind = Literal["eval", "training"]
REPORT_FILE = "report.html"
"""Default file name, written inside the run folder."""

_EVAL_MARKERS = ("results.jsonl",)
_TRAIN_MARKERS = ("metrics.jsonl", "checkpoints")


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


def detect_run(run_dir: str | Path) -> RunKind:
    """``"eval"`` or ``"training"`` from the files in ``run_dir``; a UserError names what is missing."""
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"run folder {path} does not exist: pass the --out folder of `flowsteer eval` or the "
                        "logging.run_dir of `flowsteer train`")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run folder: pass the folder that holds results.jsonl "
                        "(eval) or metrics.jsonl (training)")
    is_eval = any((path / m).exists() for m in _EVAL_MARKERS)
    is_train = any((path / m).exists() for m in _TRAIN_MARKERS)
    if is_eval and is_train:
        raise UserError(f"{path} holds both eval results (results.jsonl) and training output (metrics.jsonl/"
                        "checkpoints): pass --type eval or --type training")
    if is_eval:
        return "eval"
    if is_train:
        return "training"
    present = sorted(p.name for p in path.iterdir())[:8]
    raise UserError(
        f"{path} is neither an eval run (no results.jsonl, written by `flowsteer eval --out DIR`) nor a "
        f"training run (no metrics.jsonl or checkpoints/, written by `flowsteer train`); it holds "
        f"{', '.join(present) if present else 'nothing'}")


def build_report(run_dir: str | Path, *, kind: RunKind | None = None, episodes: int = 3,
                 designs: int = 4) -> str:
    """The HTML report of ``run_dir`` (an eval or a training run, detected unless ``kind`` is given).

    ``episodes`` is how many best and worst items an eval report shows, ``designs`` how many of the
    most common workflows it draws.
    """
    kind = kind or detect_run(run_dir)
    match kind:
        case "eval":
            from flowsteer.report.evaluation import eval_page

            page = eval_page(Path(run_dir), episodes=episodes, designs=designs)
        case "training":
            from flowsteer.report.training import training_page

            page = training_page(Path(run_dir))
        case _:
            raise UserError(f"unknown run type {kind!r}: use 'eval' or 'training'")
    return render_page(page)


def write_report(run_dir: str | Path, output: str | Path | None = None, *, kind: RunKind | None = None,
                 episodes: int = 3, designs: int = 4) -> Path:
    """Write :func:`build_report` to ``output`` (default ``RUN_DIR/report.html``); return the path."""
    html = build_report(run_dir, kind=kind, episodes=episodes, designs=designs)
    target = Path(output) if output is not None else Path(run_dir) / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
