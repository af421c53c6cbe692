"""Evaluation results: one JSONL line per item, and the summary (JSON + Markdown) computed from them.

``results.jsonl`` is appended and flushed (fsync) per item, so a killed run loses at most the items
in flight; a truncated last line is skipped with a warning when read. ``summary.json`` and
``summary.md`` are recomputed from every record of the file, grouped by (dataset, method): binary
metrics (accuracy, pass@1, EM) get a Wilson 95% interval, mean F1 a seeded percentile bootstrap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ItemResult",
    "Interval",
    "GroupSummary",
    "EvalSummary",
    "ResultsWriter",
    "read_results",
    "latest",
    "summarize",
    "wilson_interval",
    "bootstrap_interval",
    "percentile",
    "render_markdown",
    "write_summary",
    "BINARY_METRICS",
    "RESULTS_FILE",
    "CACHE_FILE",
    "TRAJECTORIES_FILE",
    "trajectory_record",
]

# The evaluation run folder: what ``flowsteer eval --out DIR`` writes and the report reads.
RESULTS_FILE = "results.jsonl"
"""One scored item per line (:class:`ItemResult`)."""
CACHE_FILE = "calls.sqlite"
"""The executor call cache of the run."""
TRAJECTORIES_FILE = "trajectories.jsonl"
"""Director episodes of an evaluation, one :func:`trajectory_record` per line."""


def trajectory_record(dataset: str, method: str, task_id: str, trajectory: Any) -> dict[str, Any]:
    """One ``trajectories.jsonl`` line: the item's key next to ``trajectory.to_dict()``."""
    return {"dataset": dataset, "method": method, "task_id": task_id, **trajectory.to_dict()}

logger = logging.getLogger(__name__)

BINARY_METRICS = ("accuracy", "pass@1", "em")
"""Metrics whose per-item value is 0 or 1 (Wilson interval); anything else is a mean (bootstrap)."""

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ItemResult:
    """What one task gave under one method: one line of ``results.jsonl``."""

    task_id: str
    dataset: str
    method: str
    """Label of the method (``flowsteer``, ``untrained``, ``io``, ``cot``, ``sc@5``, ``template:NAME``...)."""
    kind: str
    metric: str
    """The metric this item counts for (``accuracy``, ``f1``, ``em`` or ``pass@1``)."""
    answer: str
    score: float
    """The scorer's value in [0, 1] (F1 for QA)."""
    correct: bool
    workflow: str = ""
    """The DSL of the workflow that produced the answer ("" for single-call baselines)."""
    f1: float | None = None
    em: float | None = None
    turns: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    director_tokens_in: int = 0
    director_tokens_out: int = 0
    executor_tokens_in: int = 0
    executor_tokens_out: int = 0
    executor_calls: int = 0
    cache_hits: int = 0
    """Executor calls answered from the call cache (a resumed item replays what it had paid for)."""
    latency_s: float = 0.0
    errors: tuple[str, ...] = ()
    stop_reason: str = ""
    fallback: str | None = None
    baseline: str | None = None
    """The baseline spec that ran (None for the director path)."""
    status: Literal["ok", "error"] = "ok"
    """``error`` when the method raised or its workflow run was aborted (an executor failure ended
    it); such items are run again on resume. Node-level errors a run survived leave it ``ok``."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Scorer details and method extras (votes, extracted answer)."""
    question: str = ""
    """The task's question (what the report shows next to the answer)."""

    @property
    def key(self) -> tuple[str, str, str]:
        """What resume matches on: (dataset, method, task id)."""
        return (self.dataset, self.method, self.task_id)

    @property
    def value(self) -> float:
        """The item's value for its metric."""
        match self.metric:
            case "f1":
                return self.f1 if self.f1 is not None else self.score
            case "em":
                return self.em if self.em is not None else float(self.correct)
            case _:
                return float(self.correct)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["errors"] = list(self.errors)
        data["details"] = dict(self.details)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemResult:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["errors"] = tuple(values.get("errors") or ())
        return cls(**values)


class ResultsWriter:
    """Appends :class:`ItemResult` lines (or any JSON records) to a JSONL file, flushed and fsynced per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
        self._handle = self.path.open("a", encoding="utf-8")
        if needs_newline:  # a killed run left half a line: start ours on a fresh one
            self._handle.write("\n")

    def write(self, result: ItemResult) -> None:
        self.write_record(result.to_dict())

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Append one JSON object as a line."""
        self._handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_results(path: str | Path) -> list[ItemResult]:
    """Every record of a results file (missing file: none; unreadable lines skipped with a warning)."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[ItemResult] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(ItemResult.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            logger.warning("%s:%d: skipping an unreadable result line (%s)", path, number, exc)
    return out


def latest(results: Iterable[ItemResult]) -> list[ItemResult]:
    """One record per (dataset, method, task): the last one written, in first-seen order."""
    chosen: dict[tuple[str, str, str], ItemResult] = {}
    for result in results:
        chosen.pop(result.key, None)
        chosen[result.key] = result
    return list(chosen.values())


# -- statistics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float
    method: str
    """``wilson`` or ``bootstrap``."""
    level: float = 0.95


def wilson_interval(successes: int, n: int, z: float = _Z95) -> Interval:
    """Wilson score interval for a binomial proportion (sensible at 0/n and n/n, unlike Wald)."""
    if n <= 0:
        return Interval(0.0, 1.0, "wilson")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson")


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of the mean (seeded, so summaries are reproducible)."""
    if not values:
        return Interval(0.0, 1.0, "bootstrap", level)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return Interval(percentile(means, 100 * tail), percentile(means, 100 * (1 - tail)), "bootstrap", level)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class GroupSummary:
    """The metric of one (dataset, method) group and what it cost."""

    dataset: str
    method: str
    kind: str
    metric: str
    score: float
    """Mean of the items' metric values, in [0, 1]."""
    ci: Interval
    n: int
    correct: int
    em: float | None
    """Mean exact match (QA groups)."""
    tokens: Mapping[str, float]
    latency: Mapping[str, float]
    errors: int
    """Items with at least one error (a failed run or a failing workflow)."""
    fallbacks: int
    mean_turns: float
    stop_reasons: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ci"] = {"low": self.ci.low, "high": self.ci.high, "method": self.ci.method, "level": self.ci.level}
        return data


@dataclass(frozen=True)
class EvalSummary:
    """Every group's summary plus the item records they were computed from."""

    groups: tuple[GroupSummary, ...]
    results: tuple[ItemResult, ...]
    ran: int = 0
    """Items run by the call that produced this summary."""
    skipped: int = 0
    """Items found finished in the results file and not run again."""

    def group(self, dataset: str, method: str) -> GroupSummary:
        """The summary of one (dataset, method) pair."""
        for g in self.groups:
            if (g.dataset, g.method) == (dataset, method):
                return g
        known = ", ".join(f"{g.dataset}/{g.method}" for g in self.groups) or "none"
        raise KeyError(f"no results for dataset {dataset!r} and method {method!r} (have: {known})")

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups], "ran": self.ran, "skipped": self.skipped,
                "items": len(self.results)}

    def markdown(self) -> str:
        return render_markdown(self.groups)


def _group(dataset: str, method: str, items: list[ItemResult], seed: int) -> GroupSummary:
    metric = items[0].metric
    values = [r.value for r in items]
    n = len(items)
    if metric in BINARY_METRICS:
        ci = wilson_interval(round(sum(values)), n)
    else:
        ci = bootstrap_interval(values, seed=seed)
    ems = [r.em for r in items if r.em is not None]
    latencies = [r.latency_s for r in items]
    tokens = {
        "in": float(sum(r.tokens_in for r in items)), "out": float(sum(r.tokens_out for r in items)),
        "mean_in": sum(r.tokens_in for r in items) / n, "mean_out": sum(r.tokens_out for r in items) / n,
        "director_in": float(sum(r.director_tokens_in for r in items)),
        "director_out": float(sum(r.director_tokens_out for r in items)),
        "executor_in": float(sum(r.executor_tokens_in for r in items)),
        "executor_out": float(sum(r.executor_tokens_out for r in items)),
    }
    latency = {"mean": sum(latencies) / n, "p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
               "p99": percentile(latencies, 99), "max": max(latencies)}
    return GroupSummary(
        dataset=dataset, method=method, kind=items[0].kind, metric=metric, score=sum(values) / n, ci=ci, n=n,
        correct=sum(r.correct for r in items), em=sum(ems) / len(ems) if ems else None, tokens=tokens,
        latency=latency, errors=sum(bool(r.errors) or r.status == "error" for r in items),
        fallbacks=sum(r.fallback is not None for r in items), mean_turns=sum(r.turns for r in items) / n,
        stop_reasons=dict(Counter(r.stop_reason for r in items)),
    )


def summarize(results: Iterable[ItemResult], *, seed: int = 0, ran: int = 0, skipped: int = 0) -> EvalSummary:
    """Group the latest record of each item by (dataset, method) and compute each group's figures."""
    records = latest(results)
    grouped: dict[tuple[str, str], list[ItemResult]] = {}
    for r in records:
        grouped.setdefault((r.dataset, r.method), []).append(r)
    groups = tuple(_group(d, m, items, seed) for (d, m), items in sorted(grouped.items()))
    return EvalSummary(groups, tuple(records), ran, skipped)


def render_markdown(groups: Iterable[GroupSummary]) -> str:
    """``dataset | method | metric | score | 95% CI | n`` (scores in percent, one decimal)."""
    lines = ["| dataset | method | metric | score | 95% CI | n |", "|---|---|---|---:|---|---:|"]
    for g in groups:
        extra = f" (EM {100 * g.em:.1f})" if g.em is not None and g.metric == "f1" else ""
        lines.append(f"| {g.dataset} | {g.method} | {g.metric} | {100 * g.score:.1f}{extra} | "
                     f"[{100 * g.ci.low:.1f}, {100 * g.ci.high:.1f}] | {g.n} |")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: str | Path, summary: EvalSummary) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir`` (atomically: temp file + rename)."""
    out = Path(out_dir)
    json_path, md_path = out / "summary.json", out / "summary.md"
    _atomic_write(json_path, json.dumps(summary.to_dict(), indent=2) + "\n")
    _atomic_write(md_path, summary.markdown())
    return json_path, md_path


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
