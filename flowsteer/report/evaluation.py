"""The eval-run page: score tables with confidence intervals, common designs, best and worst items.

Reads what ``flowsteer eval`` writes: ``results.jsonl`` (one :class:`ItemResult` per line; the
summary is recomputed from it exactly as the harness does) and, when present, ``trajectories.jsonl``:
one JSON object per director episode with ``dataset``, ``method`` and ``task_id`` keys next to the
fields of :meth:`flowsteer.director.Trajectory.to_dict`. Items with a stored trajectory show their
turns; the others show the final workflow, answer and the per-item details the harness records.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowsteer.errors import FlowSteerError, UserError
from flowsteer.evaluation.results import (
    RESULTS_FILE,
    TRAJECTORIES_FILE,
    GroupSummary,
    ItemResult,
    latest,
    read_results,
    summarize,
    trajectory_record,
)
from flowsteer.report.page import Page, cards, esc, table

__all__ = ["eval_page", "TRAJECTORIES_FILE", "read_trajectories", "trajectory_record", "design_block"]

logger = logging.getLogger(__name__)

_TEXT_LIMIT = 1500


def read_trajectories(run_dir: Path) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """Stored episodes keyed like :attr:`ItemResult.key`, the last line of a key winning (an item the
    harness ran again on resume appends a new line); none when the file is absent."""
    path = run_dir / TRAJECTORIES_FILE
    if not path.is_file():
        return {}
    out: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out[(str(record["dataset"]), str(record["method"]), str(record["task_id"]))] = record
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            logger.warning("%s:%d: skipping an unreadable trajectory line (%s)", path, number, exc)
    return out


def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _ci_bar(g: GroupSummary) -> str:
    low, high, point = (max(0.0, min(1.0, v)) for v in (g.ci.low, g.ci.high, g.score))
    return (f'<span class="ci" title="95% CI {_pct(low)} to {_pct(high)}"><span class="range" '
            f'style="left:{100 * low:.1f}%;width:{100 * (high - low):.1f}%"></span>'
            f'<span class="point" style="left:calc({100 * point:.1f}% - 1px)"></span></span>')


def _cards(items: Sequence[ItemResult], groups: Sequence[GroupSummary]) -> str:
    figures = [
        (str(len(items)), "items"),
        (str(len({g.dataset for g in groups})), "datasets"),
        (str(len({g.method for g in groups})), "methods"),
        (str(sum(bool(r.errors) or r.status == "error" for r in items)), "items with errors"),
        (f"{sum(r.tokens_in + r.tokens_out for r in items):,}", "tokens (in + out)"),
    ]
    return cards(figures)


def _scores(groups: Sequence[GroupSummary]) -> str:
    rows = []
    for g in groups:
        score = _pct(g.score) + (f" (EM {_pct(g.em)})" if g.em is not None and g.metric == "f1" else "")
        rows.append((g.dataset, g.method, g.metric, score, f"[{_pct(g.ci.low)}, {_pct(g.ci.high)}]", _ci_bar(g),
                     g.n, g.correct, g.errors, g.fallbacks, f"{g.mean_turns:.1f}",
                     f"{g.tokens['mean_in'] + g.tokens['mean_out']:.0f}", f"{g.latency['p50']:.2f}"))
    headers = ("dataset", "method", "metric", "score %", "95% CI", "", "n", "correct", "errors", "fallbacks",
               "turns", "tokens/item", "p50 s")
    note = "Intervals: Wilson for accuracy, pass@1 and EM; seeded percentile bootstrap for mean F1."
    return (f"<section id='scores'><h2>Scores</h2>"
            f"<div class='scroll'>{table(headers, rows, numeric=(3, 6, 7, 8, 9, 10, 11, 12), raw=(5,), css='compact')}"
            "</div><p class='note'>turns: mean director turns per item; tokens/item: director + executor, in + out; "
            "p50 s: median seconds per item.</p>"
            f"<p class='note'>{esc(note)}</p></section>")


def design_block(dsl: str, meta: str = "") -> str:
    """A workflow's diagram (inline SVG), its DSL and its Mermaid source; the DSL alone if it will not parse."""
    from flowsteer.report.diagram import workflow_svg
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.graph import to_mermaid

    head = f"<div class='meta'>{esc(meta)}</div>" if meta else ""
    try:
        workflow = parse(dsl)
        drawing, mermaid = workflow_svg(workflow), to_mermaid(workflow)
    except FlowSteerError as exc:  # e.g. a custom operator this process has not registered
        return (f"<div class='design'>{head}<pre>{esc(dsl)}</pre>"
                f"<p class='note'>not drawn: {esc(str(exc).splitlines()[0])}</p></div>")
    return (f"<div class='design'>{head}<pre>{esc(dsl)}</pre>{drawing}"
            f"<details><summary>Mermaid source</summary><pre>{esc(mermaid)}</pre></details></div>")


def _common(items: Sequence[ItemResult], limit: int) -> set[str]:
    return {dsl for dsl, _ in Counter(r.workflow for r in items if r.workflow).most_common(limit)}


def _designs(items: Sequence[ItemResult], limit: int) -> str:
    counts = Counter(r.workflow for r in items if r.workflow)
    if not counts:
        return ("<section id='designs'><h2>Workflow designs</h2><p class='note'>No item recorded a workflow "
                "(single-call baselines only).</p></section>")
    blocks = []
    for dsl, count in counts.most_common(limit):
        users = [r for r in items if r.workflow == dsl]
        methods = ", ".join(sorted({r.method for r in users}))
        mean = sum(r.value for r in users) / len(users)
        blocks.append(design_block(dsl, f"{count} of {sum(counts.values())} items · mean score {_pct(mean)}% · "
                                        f"{methods}"))
    legend = "".join(f"<span style='background:{c}'>{esc(role)}</span>" for role, c in _role_colours())
    return (f"<section id='designs'><h2>Most common workflow designs</h2>"
            f"<p>{_count_line(len(counts), limit)}</p>"
            f"<p class='legend'>{legend}</p><div class='designs'>{''.join(blocks)}</div></section>")


def _count_line(distinct: int, limit: int) -> str:
    if distinct == 1:
        return "One design for every item with a workflow:"
    if distinct <= limit:
        return f"{distinct} distinct designs, by use:"
    return f"{distinct} distinct designs; the {limit} most used:"


def _role_colours() -> list[tuple[str, str]]:
    from flowsteer.report.diagram import ROLE_COLOURS

    return list(ROLE_COLOURS.items())


def _pick(items: Sequence[ItemResult], k: int) -> tuple[list[ItemResult], list[ItemResult]]:
    """The ``k`` best and ``k`` worst items, never the same twice: director episodes when there are any,
    else items with a workflow, else all."""
    pool = [r for r in items if r.turns > 0] or [r for r in items if r.workflow] or list(items)
    best = sorted(pool, key=lambda r: (-r.value, r.tokens_in + r.tokens_out))[:k]
    chosen = {r.key for r in best}
    worst = [r for r in sorted(pool, key=lambda r: (r.value, -len(r.errors))) if r.key not in chosen][:k]
    return best, worst


def _details_table(item: ItemResult) -> str:
    rows = [("stop reason", item.stop_reason or "-"), ("turns", item.turns),
            ("tokens in / out", f"{item.tokens_in} / {item.tokens_out}"),
            ("director tokens in / out", f"{item.director_tokens_in} / {item.director_tokens_out}"),
            ("executor calls", item.executor_calls), ("latency s", f"{item.latency_s:.2f}")]
    if item.fallback:
        rows.append(("fallback", item.fallback))
    for key, value in item.details.items():
        if key in ("score", "designed") or value in (None, "", [], {}):
            continue
        rows.append((key, value if isinstance(value, str) else json.dumps(value, default=str)[:400]))
    return table(("field", "value"), rows)


def _turns(trajectory: Mapping[str, Any]) -> str:
    rows = []
    for turn in trajectory.get("turns", []):
        what = turn.get("action") or (f"invalid: {turn['parse_failure']}" if turn.get("parse_failure") else
                                      turn.get("raw_output", ""))
        verdict = "accepted" if turn.get("accepted") else ("not sent" if not turn.get("sent", True) else "rejected")
        feedback = str(turn.get("feedback", ""))
        full = f"<details><summary>full feedback</summary><pre>{esc(_clip(feedback))}</pre></details>" if feedback else ""
        rows.append((turn.get("index", ""), turn.get("kind", ""), f"<pre>{esc(_clip(str(what), 400))}</pre>", verdict,
                     esc(_feedback_gist(feedback)) + full))
    return table(("turn", "kind", "director output", "verdict", "canvas feedback"), rows, numeric=(0,), raw=(2, 4))


def _feedback_gist(feedback: str) -> str:
    """The canvas's ``[Message]`` line (what happened), else its first line of content."""
    lines = [ln.strip() for ln in feedback.splitlines() if ln.strip() and not ln.strip().startswith("<")]
    message = next((ln for ln in lines if ln.startswith("[Message]")), lines[0] if lines else "")
    return _clip(message.removeprefix("[Message]:").strip(), 300)


def _episode(item: ItemResult, trajectory: Mapping[str, Any] | None, good: bool, drawn: set[str],
             first: bool) -> str:
    """One item's card; ``first`` opens its turn table (the others start folded)."""
    verdict = "correct" if item.correct else "wrong"
    tags = "".join(f"<span class='tag'>{esc(t)}</span>" for t in (item.dataset, item.method, item.task_id))
    tags += f"<span class='tag {'good' if item.correct else 'bad'}'>{item.metric} {_pct(item.value)} · {verdict}</span>"
    parts = [f"<div class='episode {'good' if good else 'bad'}'><div>{tags}</div>"]
    answer = f"<div><h3>Answer</h3><pre>{esc(_clip(item.answer or '(no answer)'))}</pre></div>"
    question = trajectory.get("task", {}).get("question", "") if trajectory is not None else item.question
    if question:
        answer = f"<div><h3>Task</h3><pre>{esc(_clip(str(question)))}</pre></div>" + answer
    parts.append(f"<div class='pair'>{answer}</div>")
    if item.errors:
        parts.append("<h3>Errors</h3><pre>" + esc(_clip("\n".join(item.errors))) + "</pre>")
    if item.workflow:
        shown = item.workflow in drawn
        parts.append(f"<h3>Workflow</h3><details{'' if shown else ' open'}><summary>"
                     f"{'diagram (drawn above)' if shown else 'diagram'}</summary>{design_block(item.workflow)}"
                     "</details>")
    designed = item.details.get("designed")
    if designed and designed != item.workflow:
        parts.append("<h3>Designed by the director (replaced by the fallback)</h3>" + design_block(str(designed)))
    parts.append("<details><summary>Item details</summary>" + _details_table(item) + "</details>")
    if trajectory is not None and trajectory.get("turns"):
        parts.append(f"<details{' open' if first else ''}><summary>Turns ({len(trajectory['turns'])} director calls)</summary>"
                     f"{_turns(trajectory)}</details>")
    parts.append("</div>")
    return "".join(parts)


def _episodes(items: Sequence[ItemResult], trajectories: Mapping[tuple[str, str, str], Mapping[str, Any]],
              k: int, drawn: set[str]) -> str:
    best, worst = _pick(items, k)
    note = ("" if trajectories else
            f"<p class='note'>This run stored no per-turn data ({TRAJECTORIES_FILE}); items show their final "
            "workflow, answer and recorded details.</p>")
    body = "<h3>Best</h3>" + "".join(_episode(r, trajectories.get(r.key), True, drawn, i == 0) for i, r in enumerate(best))
    if worst:
        body += "<h3>Worst</h3>" + "".join(_episode(r, trajectories.get(r.key), False, drawn, i == 0)
                                   for i, r in enumerate(worst))
    return f"<section id='episodes'><h2>Best and worst items</h2>{note}{body}</section>"


def eval_page(run_dir: Path, *, episodes: int = 3, designs: int = 4) -> Page:
    """The report of an evaluation folder (``results.jsonl`` required)."""
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: an eval report needs the results file `flowsteer eval --out DIR` writes")
    items = latest(read_results(path))
    if not items:
        raise UserError(f"{path} has no readable result lines: the evaluation has not finished any item yet")
    groups = summarize(items).groups
    trajectories = read_trajectories(run_dir)
    methods = ", ".join(sorted({g.method for g in groups}))
    subtitle = f"{run_dir} · {len(items)} items · methods: {methods}"
    sections = (
        f"<section id='overview'><h2>Overview</h2>{_cards(items, groups)}</section>",
        _scores(groups),
        _designs(items, designs),
        _episodes(items, trajectories, episodes, _common(items, designs)),
    )
    return Page(title=f"FlowSteer evaluation: {run_dir.name}", subtitle=subtitle, sections=sections)
