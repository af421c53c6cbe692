"""Episodes for the trainer: G director episodes per task against fresh canvases, each scored with
the CWRPO reward.

The trainer only needs a :class:`RolloutSource` (``collect(tasks, group_size, step=...)`` returning
:class:`Episode` values), so the same update code path trains against the real canvas
(:class:`DirectorRollout`) or any other environment that reports sampled token records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .batch import TokenRecordLike

__all__ = ["Episode", "RolloutSource", "DirectorRollout", "make_executor", "cached_executor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Episode:
    """One trajectory as the trainer sees it."""

    group: str
    """Episodes with the same group (the G episodes of one task) share the advantage baseline."""
    tokens: tuple[TokenRecordLike | None, ...]
    """The token record of every policy call, in order (None for a call that reported none)."""
    reward: float
    """Scalar reward R(tau)."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Per-episode numbers averaged into the step metrics (r_div, r_answer, valid_action_rate, ...)."""
    record: Mapping[str, Any] = field(default_factory=dict)
    """What happened, for ``<run_dir>/episodes.jsonl``: task, actions, workflow, answer, reward parts."""


class RolloutSource(Protocol):
    """Anything that can play ``group_size`` episodes of each task with the current policy."""

    async def collect(self, tasks: Sequence[Any], group_size: int, *, step: int) -> list[Episode]: ...


def make_executor(spec: str, tasks: Sequence[Any], options: Mapping[str, Any]) -> Any:
    """The executor chat model: ``simulated`` (gold answers from the tasks) or a model spec."""
    if spec == "simulated":
        from flowsteer.testing import SimulatedExecutor

        answers = {t.question: t.golds[0] for t in tasks if t.golds}
        return SimulatedExecutor(answers, **dict(options))
    from flowsteer.models.specs import load_chat_model

    # an executor runs the base weights: no trained director adapter is needed for it
    return load_chat_model(spec, trained_director=False, **dict(options))


def cached_executor(executor: Any, spec: str, options: Mapping[str, Any], run_dir: Any) -> Any:
    """``executor`` behind the run's call cache (``<run_dir>/executor-calls.sqlite``)."""
    from pathlib import Path

    from flowsteer.evaluation.cache import CachedChatModel, CallStore, model_identity

    store = CallStore(Path(run_dir) / "executor-calls.sqlite")
    identity = f"{spec}|{sorted(dict(options).items())}|{model_identity(executor)}"
    return CachedChatModel(executor, store, identity=identity)


class DirectorRollout:
    """Director episodes on canvases, rewarded with ``flowsteer.reward`` + ``flowsteer.scoring``.

    The reward is computed on the workflow the director designed. When the director's workflow
    failed and a fallback template produced the answer, the answer does not count (R_answer input 0):
    the policy must not be credited for the fallback's work.
    """

    def __init__(
        self,
        chat_model: Any,
        *,
        executor: Any,
        registry: Any = None,
        director_config: Any = None,
        canvas_config: Any = None,
        reward_config: Any = None,
        sandbox: Any = None,
        concurrency: int = 8,
        before_collect: Callable[[int], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        from flowsteer.director import Director

        self.director = Director(chat_model, registry=registry, config=director_config)
        self.executor = executor
        self.registry = registry
        self.canvas_config = canvas_config
        self.reward_config = reward_config
        self.sandbox = sandbox
        self.concurrency = concurrency
        self.before_collect = before_collect
        self.on_close = on_close

    def close(self) -> None:
        """Release the engine (e.g. stop a vLLM server the engine started)."""
        if self.on_close is not None:
            self.on_close()

    def make_canvas(self, *_: Any) -> Any:
        """A fresh canvas over the configured executor."""
        from flowsteer.canvas import Canvas

        return Canvas(self.executor, registry=self.registry, sandbox=self.sandbox, config=self.canvas_config)

    async def collect(self, tasks: Sequence[Any], group_size: int, *, step: int) -> list[Episode]:
        if self.before_collect is not None:
            self.before_collect(step)
        import asyncio

        from flowsteer.evaluation.cache import item_scope

        expanded = [task for task in tasks for _ in range(group_size)]
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(task: Any) -> Any:
            # one cache scope per episode: a cached executor numbers repeated requests per episode,
            # so the same node on the same task is one entry for the whole run
            async with gate:
                with item_scope():
                    # a failing policy call is a broken engine, not an episode to learn from
                    return await self.director.arun(task, self.make_canvas(), on_error="raise")

        trajectories = await asyncio.gather(*(one(t) for t in expanded))
        return [self.episode(traj, group=f"{i // group_size}:{traj.task.key}")
                for i, traj in enumerate(trajectories)]

    def episode(self, trajectory: Any, *, group: str) -> Episode:
        """Score one trajectory and keep its token records."""
        from flowsteer.reward import compute_reward
        from flowsteer.scoring import score

        workflow = trajectory.designed if trajectory.designed is not None else trajectory.workflow
        answer_score = 0.0
        if trajectory.fallback is None:
            answer_score = float(score(trajectory.task, trajectory.answer, sandbox=self.sandbox).value)
        breakdown = compute_reward(workflow, answer_score, registry=self.registry, config=self.reward_config)
        tokens = tuple(turn.tokens for turn in trajectory.turns)
        metrics = {
            "reward": float(breakdown.total),
            "r_div": float(breakdown.diversity),
            "r_answer": float(breakdown.answer),
            "answer_score": answer_score,
            "released": float(breakdown.released),
            "valid_action_rate": float(trajectory.valid_action_rate),
            "turns": float(max((t.index for t in trajectory.turns), default=0)),
            "finished": float(trajectory.finished),
            "fallback": float(trajectory.fallback is not None),
            "operators": float(breakdown.operator_count),
            "completion_tokens": float(sum(len(t.completion_ids) for t in tokens if t is not None)),
        }
        record = {
            "task": trajectory.task.id or trajectory.task.question[:80], "family": trajectory.task.source,
            "actions": [t.raw_output.strip()[:200] for t in trajectory.turns],
            "workflow": workflow.dsl if not workflow.is_empty else "", "answer": trajectory.answer[:200],
            "stop_reason": trajectory.stop_reason, "fallback": trajectory.fallback,
            "reward": float(breakdown.total), "r_div": float(breakdown.diversity), "r_answer": answer_score,
        }
        return Episode(group=group, tokens=tokens, reward=float(breakdown.total), metrics=metrics, record=record)
