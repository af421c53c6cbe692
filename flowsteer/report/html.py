"""Assemble the self-contained HTML report of a run folder (``flowsteer report RUN_DIR``).

The page is one file: inline CSS, PNG images as base64 ``data:`` URIs, workflow diagrams as inline
SVG (with their Mermaid source in a ``<details>`` block). It holds no script and refers to no URL,
so it opens offline and can be attached to an issue or mailed as is.

Run type detection: a folder with ``results.jsonl`` (written by ``flowsteer eval``) is an
evaluation run; one with ``metrics.jsonl`` or ``checkpoints/`` (written by ``flowsteer train``) is a
training run; a ``bench_learning`` result file (``benchmarks/results/learning.json``) is the shipped
director's learning report (curves and eval table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from flowsteer.errors import UserError
from flowsteer.report.page import Page, esc, png_data_uri, render_page, table

__all__ = ["RunKind", "Page", "detect_run", "build_report", "write_report", "render_page", "table",
           "png_data_uri", "esc", "REPORT_FILE"]

RunKind = Literal["eval", "training", "learning"]
REPORT_FILE = "report.html"
"""Default file name, written inside the run folder."""

_EVAL_MARKERS = ("results.jsonl",)
_TRAIN_MARKERS = ("metrics.jsonl", "checkpoints")


def detect_run(run_dir: str | Path) -> RunKind:
    """``"eval"`` or ``"training"`` from the files in ``run_dir``; a UserError names what is missing."""
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"run folder {path} does not exist: pass the --out folder of `flowsteer eval` or the "
                        "logging.run_dir of `flowsteer train`")
    if not path.is_dir():
        from flowsteer.report.learning import is_learning_result

        if is_learning_result(path):
            return "learning"
        raise UserError(f"{path} is a file, not a run folder: pass the folder that holds results.jsonl "
                        "(eval) or metrics.jsonl (training), or a bench_learning result (.json)")
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
        case "learning":
            from flowsteer.report.learning import learning_page

            page = learning_page(Path(run_dir))
        case _:
            raise UserError(f"unknown run type {kind!r}: use 'eval', 'training' or 'learning'")
    return render_page(page)


def write_report(run_dir: str | Path, output: str | Path | None = None, *, kind: RunKind | None = None,
                 episodes: int = 3, designs: int = 4) -> Path:
    """Write :func:`build_report` to ``output`` (default ``RUN_DIR/report.html``; for a result file,
    the file's name with ``.html``); return the path."""
    html = build_report(run_dir, kind=kind, episodes=episodes, designs=designs)
    source = Path(run_dir)
    default = source.with_suffix(".html") if source.is_file() else source / REPORT_FILE
    target = Path(output) if output is not None else default
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
