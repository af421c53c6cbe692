"""The training-run page: curves (``flowsteer.training.plot``), reward and valid-action tables, checkpoints.

Reads what :class:`flowsteer.training.CWRPOTrainer` writes into ``logging.run_dir``:
``metrics.jsonl`` (one line per step), ``config.yaml`` and ``checkpoints/step_NNNNNN/``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowsteer.errors import MissingExtraError, UserError
from flowsteer.report.html import Page, esc, png_data_uri, table

__all__ = ["training_page", "STEP_COLUMNS", "sample_rows"]

STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reward_mean", "reward"), ("reward_std", "reward std"), ("r_div", "r_div"), ("r_answer", "r_answer"),
    ("answer_score", "answer score"), ("valid_action_rate", "valid actions"), ("turns", "turns"),
    ("finished", "finished"), ("fallback", "fallback"), ("zero_variance_fraction", "zero-var groups"),
    ("kl", "KL"), ("clip_fraction", "clip frac"), ("lr", "lr"), ("time_step", "s / step"),
)
"""Metrics shown in the per-step table (key, column header), when the run logged them."""

_MAX_ROWS = 30


def sample_rows(records: Sequence[Mapping[str, Any]], limit: int = _MAX_ROWS) -> list[Mapping[str, Any]]:
    """At most ``limit`` records, evenly spread, always keeping the first and the last."""
    if len(records) <= limit:
        return list(records)
    picks = sorted({round(i * (len(records) - 1) / (limit - 1)) for i in range(limit)})
    return [records[i] for i in picks]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if value and abs(value) < 1e-3 else f"{value:.4g}"
    return str(value)


def _cards(records: Sequence[Mapping[str, Any]], checkpoints: int) -> str:
    last = records[-1]
    figures = [(str(last.get("step", len(records))), "steps logged"), (str(checkpoints), "checkpoints")]
    rewards = [(float(r["reward_mean"]), r.get("step", i + 1)) for i, r in enumerate(records) if "reward_mean" in r]
    if rewards:
        best, at = max(rewards)
        figures += [(f"{rewards[0][0]:.3f} → {rewards[-1][0]:.3f}", "reward, first → last"),
                    (f"{best:.3f}", f"best reward (step {at})")]
    if "valid_action_rate" in last:
        figures.append((f"{100 * float(last['valid_action_rate']):.1f}%", "valid actions, last step"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>'
        for v, k in figures) + "</div>"


def _curves(run_dir: Path) -> str:
    from flowsteer.training.plot import plot_run

    with tempfile.TemporaryDirectory() as tmp:  # never write into the run folder being reported
        try:
            png = plot_run(run_dir, Path(tmp) / "curves.png").read_bytes()
        except MissingExtraError as exc:
            return f"<section id='curves'><h2>Training curves</h2><p class='note'>{esc(exc)}</p></section>"
    return (f"<section id='curves'><h2>Training curves</h2><img class='curves' alt='training curves' "
            f"src='{png_data_uri(png)}'></section>")


def _steps(records: Sequence[Mapping[str, Any]]) -> str:
    columns = [(k, h) for k, h in STEP_COLUMNS if any(k in r for r in records)]
    shown = sample_rows(records)
    rows = [[r.get("step", "")] + [_fmt(r[k]) if k in r else "" for k, _ in columns] for r in shown]
    note = (f"<p class='note'>{len(shown)} of {len(records)} steps shown, evenly spaced.</p>"
            if len(shown) < len(records) else "")
    headers = ["step"] + [h for _, h in columns]
    return (f"<section id='steps'><h2>Rewards and valid actions per step</h2>{note}"
            f"{table(headers, rows, numeric=range(len(headers)))}</section>")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _checkpoints(run_dir: Path) -> tuple[str, int]:
    from flowsteer.training.checkpoint import latest_checkpoint

    root = run_dir / "checkpoints"
    found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")) if root.is_dir() else []
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return ("<section id='checkpoints'><h2>Checkpoints</h2><p class='note'>No complete checkpoint yet "
                "(one is written every logging.save_every steps and at the end).</p></section>", 0)
    state = json.loads((latest / "state.json").read_text(encoding="utf-8"))
    files = [(p.name + ("/" if p.is_dir() else ""), f"{_size(p) / 1024:.1f}") for p in sorted(latest.iterdir())]
    body = (f"<p>Latest: <code>{esc(latest)}</code> (step {esc(state.get('step'))}); all: "
            f"{esc(', '.join(p.name for p in found))}.</p>"
            f"{table(('file', 'KiB'), files, numeric=(1,))}"
            f"<details><summary>state.json</summary><pre>{esc(json.dumps(state, indent=2))}</pre></details>")
    adapter = latest / "adapter" / "adapter_config.json"
    if adapter.is_file():
        config = json.loads(adapter.read_text(encoding="utf-8"))
        keys = ("base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules")
        body += "<h3>LoRA adapter</h3>" + table(("field", "value"), [(k, config.get(k)) for k in keys if k in config])
    return f"<section id='checkpoints'><h2>Checkpoints</h2>{body}</section>", len(found)


def training_page(run_dir: Path) -> Page:
    """The report of a training run folder (``metrics.jsonl`` required)."""
    from flowsteer.training.plot import read_metrics

    records = read_metrics(run_dir)
    if not records:
        raise UserError(f"{run_dir / 'metrics.jsonl'} has no records yet: train for at least one step")
    checkpoints, count = _checkpoints(run_dir)
    sections = [f"<section id='overview'><h2>Overview</h2>{_cards(records, count)}</section>",
                _curves(run_dir), _steps(records), checkpoints]
    config = run_dir / "config.yaml"
    if config.is_file():
        sections.append(f"<section id='config'><h2>Configuration</h2><details><summary>config.yaml</summary>"
                        f"<pre>{esc(config.read_text(encoding='utf-8'))}</pre></details></section>")
    return Page(title=f"FlowSteer training: {run_dir.name}",
                subtitle=f"{run_dir} · {len(records)} steps logged", sections=tuple(sections))
