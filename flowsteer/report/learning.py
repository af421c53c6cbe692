"""The shipped director's page: learning curves and the eval table of a ``bench_learning`` result.

``benchmarks/bench_learning.py`` writes one JSON object (``benchmarks/results/learning.json``): the
training run's per-step curves and wall times (``curves``), and per dataset the accuracy, CI95, own
finish rate, R_div = 1 rate and executor calls of every method (``table``), with the issue's
targets checked against the trained director's row (``targets``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError
from flowsteer.report.page import Page, cards, esc, table

__all__ = ["learning_page", "read_learning", "is_learning_result", "LEARNING_PANELS", "DIRECTOR_ROWS"]

LEARNING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward per step", ("reward_mean", "r_div", "answer_score")),
    ("episodes ended by the director's finish", ("finished",)),
    ("KL to the reference policy", ("kl",)),
    ("seconds per step", ("time_rollout", "time_update", "time_step")),
)
DIRECTOR_ROWS = ("flowsteer", "flowsteer-sampled", "untrained")
"""The directors' rows, shown first in each table (in this order)."""


def is_learning_result(path: Path) -> bool:
    """Whether ``path`` is a JSON file written by ``bench_learning`` (``"benchmark": "learning"``)."""
    if not path.is_file() or path.suffix != ".json":
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("benchmark") == "learning"
    except (ValueError, AttributeError):
        return False


def read_learning(path: Path) -> dict[str, Any]:
    """The learning result in ``path``; a UserError says what the file lacks."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or data.get("benchmark") != "learning":
        raise UserError(f"{path} is not a bench_learning result (no \"benchmark\": \"learning\"); write one with "
                        "`python benchmarks/bench_learning.py > learning.json`")
    if not isinstance(data.get("table"), dict):
        raise UserError(f"{path} has no eval table ('table'): the benchmark did not finish")
    return data


def _f(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _cards(data: Mapping[str, Any]) -> str:
    targets = data.get("targets") or {}
    checks = [v for t in targets.values() for k, v in t.items() if isinstance(v, bool) and k.startswith(
        ("finish", "rdiv", "accuracy", "calls"))]
    steps = (data.get("curves") or {}).get("steps") or []
    timing = (data.get("curves") or {}).get("timing") or {}
    figures = [(str(len(data["table"])), "datasets evaluated"),
               (f"{sum(checks)} / {len(checks)}", "targets met"),
               (str(len(steps)), "CWRPO steps")]
    if timing.get("total_wall_s"):
        figures.append((f"{float(timing['total_wall_s']) / 60:.1f} min", f"training, {timing.get('cores', '?')} cores"))
    return cards(figures)


def _curves(steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return ("<section id='curves'><h2>Learning curves</h2><p class='note'>The result holds no per-step "
                "curves (bench_learning reads them from the training run folder).</p></section>")
    from flowsteer.report.plot import curves_image

    keys = ("step", "reward_mean", "r_div", "answer_score", "finished", "kl", "time_step")
    rows = [[_f(s.get(k), 3) if k != "step" else s.get("step", "") for k in keys] for s in steps]
    return (f"<section id='curves'><h2>Learning curves</h2>{curves_image(steps, panels=LEARNING_PANELS, alt='learning curves')}"
            f"{table(('step', 'reward', 'R_div', 'answer', 'own finish', 'KL', 's / step'), rows, numeric=range(7))}"
            "</section>")


def _tables(data: Mapping[str, Any]) -> str:
    parts = []
    measured = data.get("measured_now") or {}
    for dataset, rows in data["table"].items():
        order = sorted(rows, key=lambda m: (DIRECTOR_ROWS.index(m) if m in DIRECTOR_ROWS else len(DIRECTOR_ROWS),
                                            -float(rows[m].get("accuracy") or 0.0)))
        body = []
        for method in order:
            r = rows[method]
            ci = r.get("ci95") or [None, None]
            mark = " (kept)" if measured and method not in measured.get(dataset, []) else ""
            body.append((method + mark, _f(r.get("accuracy")), f"{_f(ci[0])}-{_f(ci[1])}", _f(r.get("finish_rate")),
                         _f(r.get("rdiv1_rate")), _f(r.get("executor_calls"), 1)))
        n = next(iter(rows.values())).get("n", "?") if rows else "?"
        parts.append(f"<h3>{esc(dataset)} <small>(n = {esc(n)} per method)</small></h3>"
                     + table(("method", "accuracy", "CI95", "own finish", "R_div = 1", "executor calls/task"),
                             body, numeric=(1, 3, 4, 5)))
    note = ""
    if measured:
        kept = data.get("kept_from") or {}
        when = (kept.get("machine") or {}).get("date", "an earlier run")
        note = (f"<p class='note'>Rows marked (kept) were measured on {esc(when)} "
                f"(<code>{esc(kept.get('file', '?'))}</code>); the others for this result.</p>")
    return f"<section id='eval'><h2>Evaluation</h2><p>{esc(data.get('method', ''))}</p>{note}{''.join(parts)}</section>"


def _targets(data: Mapping[str, Any]) -> str:
    rows = []
    for dataset, checks in (data.get("targets") or {}).items():
        for name, value in checks.items():
            if isinstance(value, bool):
                rows.append((dataset, name, "met" if value else "MISSED"))
    if not rows:
        return ""
    return f"<section id='targets'><h2>Targets (trained director)</h2>{table(('dataset', 'target', ''), rows)}</section>"


def learning_page(path: Path) -> Page:
    """The report of a ``bench_learning`` result file."""
    data = read_learning(path)
    curves = data.get("curves") or {}
    sections = [f"<section id='overview'><h2>Overview</h2>{_cards(data)}</section>",
                _curves(curves.get("steps") or []), _tables(data), _targets(data)]
    if data.get("notes"):
        sections.append(f"<section id='notes'><h2>Notes</h2><p>{esc(data['notes'])}</p></section>")
    details = {"timing": curves.get("timing"), "warm start": curves.get("warmstart"), "machine": data.get("machine")}
    sections.append("<section id='details'><h2>Details</h2>" + "".join(
        f"<details><summary>{esc(k)}</summary><pre>{esc(json.dumps(v, indent=1))}</pre></details>"
        for k, v in details.items() if v) + "</section>")
    machine = data.get("machine") or {}
    return Page(title="FlowSteer: has the director learned?",
                subtitle=f"{path} · measured {machine.get('date', '?')} · commit {machine.get('commit', '?')}",
                sections=tuple(x for x in sections if x))
