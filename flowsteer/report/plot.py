"""Training curves from a run's ``metrics.jsonl`` as one PNG (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowsteer.errors import MissingExtraError, UserError
from flowsteer.runs import read_metrics

__all__ = ["read_metrics", "plot_run", "plot_records", "curves_image", "DEFAULT_PANELS"]

DEFAULT_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward_mean", "r_div", "r_answer")),
    ("valid actions", ("valid_action_rate",)),
    ("turns per episode", ("turns",)),
    ("KL to reference", ("kl",)),
    ("clip fraction", ("clip_fraction",)),
    ("grad norm", ("grad_norm",)),
    ("learning rate", ("lr",)),
    ("seconds per step", ("time_rollout", "time_update")),
)


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_run(run_dir: str | Path, output: str | Path | None = None, *, smooth: int = 1,
             panels: Sequence[tuple[str, Sequence[str]]] = DEFAULT_PANELS) -> Path:
    """Draw the run's curves (panels whose metrics are missing are skipped); return the PNG path."""
    records = read_metrics(run_dir)
    if not records:
        raise UserError(f"{run_dir}/metrics.jsonl has no records yet: train for at least one step")
    target = Path(output) if output is not None else Path(run_dir) / "training_curves.png"
    return plot_records(records, target, smooth=smooth, panels=panels)


def plot_records(records: Sequence[Mapping[str, Any]], output: str | Path, *, smooth: int = 1,
                 panels: Sequence[tuple[str, Sequence[str]]] = DEFAULT_PANELS) -> Path:
    """Draw per-step ``records`` (metrics.jsonl lines, or a learning result's ``curves.steps``) into
    ``output``, one panel per title whose metrics some record holds; return the PNG path."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "train", "Plotting training curves") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not records:
        raise UserError("no per-step records to plot")
    present = [(title, [k for k in keys if any(r.get(k) is not None for r in records)]) for title, keys in panels]
    present = [(title, keys) for title, keys in present if keys]
    cols = 2
    rows = max(1, math.ceil(len(present) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.0 * rows), squeeze=False)
    steps = [r.get("step", i + 1) for i, r in enumerate(records)]
    for ax, (title, keys) in zip(axes.flat, present, strict=False):
        for key in keys:
            xs = [s for s, r in zip(steps, records, strict=True) if r.get(key) is not None]
            ys = _smooth([float(r[key]) for r in records if r.get(key) is not None], max(1, smooth))
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 12 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    target = Path(output)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def curves_image(records: Sequence[Mapping[str, Any]], *, panels: Sequence[tuple[str, Sequence[str]]] = DEFAULT_PANELS,
                 alt: str = "training curves") -> str:
    """The curves of ``records`` as an inline ``<img>`` for a report page (drawn in a temporary
    folder, never beside the run), or a note naming the missing extra."""
    import tempfile

    from flowsteer.report.page import esc, png_data_uri

    with tempfile.TemporaryDirectory() as tmp:
        try:
            png = plot_records(records, Path(tmp) / "curves.png", panels=panels).read_bytes()
        except MissingExtraError as exc:
            return f"<p class='note'>{esc(exc)}</p>"
    return f"<img class='curves' alt='{esc(alt)}' src='{png_data_uri(png)}'>"
