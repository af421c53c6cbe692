"""The training-run page: curves (``flowsteer.report.plot``), reward and valid-action tables, checkpoints.

Reads what :class:`flowsteer.training.CWRPOTrainer` writes into ``logging.run_dir``:
``metrics.jsonl`` (one line per step), ``episodes.jsonl`` (one line per episode: the samples and
the operators the director used), ``config.yaml`` and ``checkpoints/step_NNNNNN/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flowsteer.errors import UserError
from flowsteer.report.page import Page, cards, esc, table

__all__ = ["training_page", "STEP_COLUMNS", "sample_rows"]

STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reward_mean", "reward"), ("reward_std", "reward std"), ("r_div", "r_div"), ("r_answer", "r_answer"),
    ("answer_score", "answer score"), ("valid_action_rate", "valid actions"), ("turns", "turns"),
    ("finished", "finished"), ("fallback", "fallback"), ("zero_variance_fraction", "zero-var groups"),
    ("kl", "KL"), ("clip_fraction", "clip frac"), ("lr", "lr"), ("time_step", "s / step"),
)
"""Metrics shown in the per-step table (key, column header), when the run logged them."""

_MAX_ROWS = 30
_T = TypeVar("_T")


def sample_rows(records: Sequence[_T], limit: int = _MAX_ROWS) -> list[_T]:
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
    return cards(figures)


def _curves(records: Sequence[Mapping[str, Any]]) -> str:
    from flowsteer.report.plot import curves_image

    return f"<section id='curves'><h2>Training curves</h2>{curves_image(records)}</section>"


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
    from flowsteer.runs import latest_checkpoint

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


_SAMPLES_PER_STEP = 4


def _episodes(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "episodes.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line torn by a crash mid-write
            continue
    return out


def _operators(workflow: str) -> list[str]:
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.ir import OperatorNode

    try:
        parsed = parse(workflow)
    except Exception:  # noqa: BLE001 - a record from another registry: count nothing
        return []
    return [ref.node.operator for ref in parsed.walk() if isinstance(ref.node, OperatorNode)]


def _samples(episodes: Sequence[Mapping[str, Any]]) -> str:
    """Per step: how often each operator appears in the designed workflows, and a few episodes."""
    if not episodes:
        return ""
    steps = sorted({int(e.get("step", 0)) for e in episodes})
    names: dict[str, None] = {}
    usage: dict[int, dict[str, int]] = {}
    for e in episodes:
        counts = usage.setdefault(int(e.get("step", 0)), {})
        for name in _operators(str(e.get("workflow") or "")):
            names.setdefault(name)
            counts[name] = counts.get(name, 0) + 1
    per_step = {step: sum(1 for e in episodes if int(e.get("step", 0)) == step) for step in steps}
    usage_rows = [(step, per_step[step], *(f"{usage[step].get(n, 0) / per_step[step]:.2f}" for n in names))
                  for step in steps]
    body = ("<p>Operators per designed workflow (mean count per episode), by step.</p>"
            + table(("step", "episodes", *names), usage_rows, numeric=tuple(range(len(names) + 2))))
    rows = []
    for step in sample_rows(steps, limit=10):
        chosen = [e for e in episodes if int(e.get("step", 0)) == step][:_SAMPLES_PER_STEP]
        rows += [(step, e.get("family") or "", str(e.get("task", ""))[:60], e.get("workflow") or "(empty)",
                  str(e.get("answer", ""))[:40], f"{float(e.get('reward', 0.0)):+.2f}", e.get("stop_reason", ""))
                 for e in chosen]
    body += ("<h3>Sample episodes</h3>"
             + table(("step", "family", "task", "workflow", "answer", "reward", "stop"), rows, numeric=(0, 5)))
    return f"<section id='samples'><h2>Samples</h2>{body}</section>"


def training_page(run_dir: Path) -> Page:
    """The report of a training run folder (``metrics.jsonl`` required)."""
    from flowsteer.runs import read_metrics

    records = read_metrics(run_dir)
    if not records:
        raise UserError(f"{run_dir / 'metrics.jsonl'} has no records yet: train for at least one step")
    checkpoints, count = _checkpoints(run_dir)
    sections = [f"<section id='overview'><h2>Overview</h2>{_cards(records, count)}</section>",
                _curves(records), _steps(records), _samples(_episodes(run_dir)), checkpoints]
    sections = [x for x in sections if x]
    config = run_dir / "config.yaml"
    if config.is_file():
        sections.append(f"<section id='config'><h2>Configuration</h2><details><summary>config.yaml</summary>"
                        f"<pre>{esc(config.read_text(encoding='utf-8'))}</pre></details></section>")
    return Page(title=f"FlowSteer training: {run_dir.name}",
                subtitle=f"{run_dir} · {len(records)} steps logged", sections=tuple(sections))
