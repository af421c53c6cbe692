"""Workflow search: which fixed workflow does best, per task family, with *this* executor.

The warm start of the director (``flowsteer.training.warmstart``) needs to know what a good
workflow looks like before any RL: :func:`search_workflows` runs every candidate workflow (DSL
strings) on a sample of training tasks, scores each answer, computes the CWRPO reward of each
run and picks, per family (``Task.source``), the candidate with the highest mean reward (fewer
executor calls break ties). Candidates whose structure cannot release the answer term
(``R_div`` below the release threshold) are measured but never picked, so a director warm-started
on the winner is not taught a workflow its own reward ignores.

Runs share one executor, so wrapping it in :class:`~flowsteer.evaluation.cache.CachedChatModel`
makes every node that two candidates have in common (the same first ``Programmer`` on the same
task) cost one call for the whole search, and later rollouts of the same workflow nearly free.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError
from flowsteer.evaluation.cache import item_scope
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.reward import RewardConfig, compute_reward
from flowsteer.scoring import ascore
from flowsteer.sync import run_sync
from flowsteer.tasks import Task
from flowsteer.workflow.interpreter import Interpreter

__all__ = ["DEFAULT_CANDIDATES", "RunScore", "CandidateScore", "SearchResult", "search_workflows",
           "asearch_workflows", "family_of", "skeleton"]

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES: Mapping[str, tuple[str, ...]] = {
    "math": (
        "Programmer -> Verify ? Revise : done -> Verify ? Revise : done -> Format",
        "Programmer -> Review ? Revise : done -> Review ? Revise : done -> Format",
        "Programmer -> Verify ? Programmer : done -> Review ? Revise : done -> Format",
        "[Programmer, Programmer] -> ScEnsemble -> Verify ? Revise : done -> Format",
        "Custom -> Verify ? Revise : done -> Verify ? Revise : done -> Format",
        "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format",
    ),
    "code": (
        "Programmer -> Test ? Revise : done -> Test ? Revise : done -> Format",
        "Programmer -> Test ? Programmer : done -> Test ? Programmer : done -> Format",
        "[Programmer, Programmer] -> ScEnsemble -> Test ? Programmer : done -> Format",
        "[Programmer, Custom] -> ScEnsemble -> Test ? Revise : done -> Format",
        "Custom -> Review ? Revise : done -> Review ? Revise : done -> Format",
    ),
    "qa": (
        "AnswerGenerate -> Verify ? Revise : done -> Verify ? Revise : done -> Format",
        "[AnswerGenerate, Custom] -> ScEnsemble -> Review ? Revise : done -> Format",
        "Plan -> [AnswerGenerate, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format",
    ),
}
"""Task kind -> candidate workflows tried by default (each can release the answer term under the
default reward: a checker, a formatter, a control structure and six operators)."""


def skeleton(dsl: str, registry: OperatorRegistry | None = None) -> str:
    """``dsl`` with every checking operator written ``CHECK``: the structure two families can share
    while each keeps the checker its task kind needs (``Programmer -> CHECK ? Revise : done``)."""
    from flowsteer.operators import Role
    from flowsteer.workflow.dsl import parse

    registry = registry or default_registry()
    checkers = {s.name for s in registry.by_role(Role.CHECKING)}
    canonical = parse(dsl, registry).dsl
    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", lambda m: "CHECK" if m.group(0) in checkers else m.group(0), canonical)


def family_of(task: Task) -> str:
    """The family a task belongs to: its ``source`` (the dataset), else its kind."""
    return task.source or task.kind


@dataclass(frozen=True)
class RunScore:
    """One candidate on one task."""

    task_id: str
    answer: str
    correct: bool
    reward: float
    calls: int


@dataclass(frozen=True)
class CandidateScore:
    """One candidate workflow over one family's search tasks."""

    family: str
    dsl: str
    n: int
    accuracy: float
    reward: float
    diversity: float
    calls: float
    """Mean executor calls per task (cache hits included: the cost a user without the cache pays)."""
    runs: tuple[RunScore, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    """Every candidate's score per family, with the winner of each."""

    scores: tuple[CandidateScore, ...]
    release_threshold: float = 1.0

    @property
    def families(self) -> list[str]:
        return sorted({s.family for s in self.scores})

    def table(self, family: str) -> list[CandidateScore]:
        """The candidates of ``family``, best first."""
        rows = [s for s in self.scores if s.family == family]
        return sorted(rows, key=lambda s: (s.diversity + 1e-9 >= self.release_threshold, s.reward, -s.calls),
                      reverse=True)

    def best(self, family: str) -> CandidateScore:
        """The winner of ``family``: the highest mean reward among candidates that release the answer."""
        rows = [s for s in self.table(family) if s.diversity + 1e-9 >= self.release_threshold]
        if not rows:
            raise UserError(f"no candidate workflow for family {family!r} reaches R_div "
                            f"{self.release_threshold}: add candidates with a checker, a formatter, a "
                            "control structure and enough operators")
        return rows[0]

    def choose(self, registry: OperatorRegistry | None = None, *, shared_structure: bool = True,
               tolerance: float = 0.0) -> dict[str, CandidateScore]:
        """The workflow each family teaches the director: its :meth:`best`, or, with
        ``shared_structure``, among the candidates within ``tolerance`` of that best mean reward,
        the one whose :func:`skeleton` the most families can use.

        One director learns every family at once; when two workflows score the same, teaching
        families the same skeleton (``Programmer -> Verify ? Revise : done`` for math,
        ``Programmer -> Test ? Revise : done`` for code) leaves it one decision per kind (which
        checker) instead of two unrelated action sequences, which a small model learns from far
        fewer demonstrations. It never trades reward beyond ``tolerance`` for it.
        """
        registry = registry or default_registry()
        best = {family: self.best(family) for family in self.families}
        if not shared_structure or len(best) < 2:
            return best
        tied = {family: [s for s in self.table(family) if s.diversity + 1e-9 >= self.release_threshold
                         and s.reward >= best[family].reward - tolerance - 1e-9] for family in best}
        reach: dict[str, int] = defaultdict(int)
        for rows in tied.values():
            for shape in {skeleton(s.dsl, registry) for s in rows}:
                reach[shape] += 1
        # table order (reward, then fewer calls) decides among candidates of equal reach
        return {family: max(rows, key=lambda s: reach[skeleton(s.dsl, registry)]) for family, rows in tied.items()}

    def gap(self, family: str) -> float:
        """Accuracy of the best candidate minus that of the worst (how much the choice matters)."""
        rows = self.table(family)
        return max(s.accuracy for s in rows) - min(s.accuracy for s in rows)

    def to_dict(self) -> dict[str, Any]:
        return {"release_threshold": self.release_threshold, "scores": [asdict(s) for s in self.scores],
                "best": {f: self.best(f).dsl for f in self.families}}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            scores = tuple(
                CandidateScore(**{**s, "runs": tuple(RunScore(**r) for r in s.get("runs", ()))})
                for s in data["scores"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not a workflow search result ({exc}); delete it to search again") from exc
        return cls(scores, float(data.get("release_threshold", 1.0)))

    def markdown(self) -> str:
        lines = ["| family | workflow | accuracy | mean reward | R_div | calls/task |", "|---|---|---|---|---|---|"]
        for family in self.families:
            for s in self.table(family):
                lines.append(f"| {family} | `{s.dsl}` | {s.accuracy:.2f} ({s.n}) | {s.reward:+.2f} | "
                             f"{s.diversity:.1f} | {s.calls:.1f} |")
        return "\n".join(lines)


async def asearch_workflows(
    tasks: Sequence[Task],
    executor: Any,
    candidates: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    *,
    registry: OperatorRegistry | None = None,
    reward_config: RewardConfig | None = None,
    sandbox: Any = None,
    concurrency: int = 8,
    on_run: Callable[[str, str, RunScore], None] | None = None,
) -> SearchResult:
    """Run each candidate on each task (``concurrency`` runs at once, so a local executor batches).

    ``candidates``: DSL strings for every task, or a mapping from task kind (or family) to DSL
    strings (default :data:`DEFAULT_CANDIDATES`). ``on_run(family, dsl, run)`` sees each result.
    """
    from flowsteer.workflow.dsl import parse

    if not tasks:
        raise UserError("search_workflows needs at least one task")
    registry = registry or default_registry()
    reward_config = reward_config or RewardConfig()
    interpreter = Interpreter(executor, registry=registry, sandbox=sandbox)
    gate = asyncio.Semaphore(max(1, concurrency))

    def options(task: Task) -> Sequence[str]:
        if candidates is None:
            return DEFAULT_CANDIDATES.get(task.kind, DEFAULT_CANDIDATES["math"])
        if isinstance(candidates, Mapping):
            found = candidates.get(family_of(task), candidates.get(task.kind))
            if found is None:
                raise UserError(f"no candidate workflows for family {family_of(task)!r} or kind {task.kind!r}")
            return found
        return candidates

    parsed = {dsl: parse(dsl, registry) for task in tasks for dsl in options(task)}

    async def one(task: Task, dsl: str) -> tuple[str, str, RunScore]:
        async with gate:
            with item_scope():  # repeated identical requests are numbered per run, so runs share keys
                result = await interpreter.arun(parsed[dsl], task)
            graded = await ascore(task, result.answer, sandbox=sandbox)
        reward = compute_reward(parsed[dsl], graded.value, registry=registry, config=reward_config)
        run = RunScore(task.id or task.question[:60], result.answer, graded.correct, reward.total,
                       sum(t.result.usage.calls for t in result.trace))
        if on_run is not None:
            on_run(family_of(task), dsl, run)
        return family_of(task), dsl, run

    # task-major order: the first runs of every task share their opening node through the cache
    results = await asyncio.gather(*(one(t, dsl) for t in tasks for dsl in options(t)))
    grouped: dict[tuple[str, str], list[RunScore]] = defaultdict(list)
    for family, dsl, run in results:
        grouped[family, dsl].append(run)
    scores = []
    for (family, dsl), runs in grouped.items():
        n = len(runs)
        div = compute_reward(parsed[dsl], 0.0, registry=registry, config=reward_config).diversity
        scores.append(CandidateScore(family, dsl, n, sum(r.correct for r in runs) / n,
                                     sum(r.reward for r in runs) / n, div, sum(r.calls for r in runs) / n,
                                     tuple(runs)))
    return SearchResult(tuple(scores), reward_config.release_threshold)


def search_workflows(tasks: Sequence[Task], executor: Any, candidates: Any = None, **kwargs: Any) -> SearchResult:
    """Sync twin of :func:`asearch_workflows`."""
    return run_sync(asearch_workflows(tasks, executor, candidates, **kwargs))
