"""The transformers engine: rollouts sample from the very model object being trained.

The director talks to a :class:`~flowsteer.models.local.LocalChatModel` that
shares the trainer's peft model, so every rollout uses the current adapter with no weight transfer
(the "stale adapter" failure of a separate inference server cannot happen here). Each call gets a
sampler seed drawn from a generator seeded by ``(run seed, step)``, so a run is reproducible while
the G episodes of a group still differ.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import PrivateAttr

from flowsteer.models.local import LocalChatModel

from ..config import RolloutConfig

__all__ = ["HFEngine", "TrainingChatModel"]


class TrainingChatModel(LocalChatModel):
    """A ``LocalChatModel`` whose per-call sampler seeds come from a resettable generator."""

    _seed_source: random.Random = PrivateAttr(default_factory=random.Random)

    def reseed(self, seed: str | int) -> None:
        """Restart the per-call seed sequence."""
        self._seed_source = random.Random(seed)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("seed") is None and self.seed is None:
            kwargs = {**kwargs, "seed": self._seed_source.getrandbits(62)}
        return super()._params(stop, kwargs)


class HFEngine:
    """Owns the chat model the director uses during rollouts."""

    def __init__(self, model: Any, tokenizer: Any, config: RolloutConfig, *, seed: int = 0,
                 director: Any = None) -> None:
        """``director``: the typed ``DirectorConfig`` whose sampling settings (temperature, top_p,
        max_action_tokens) the engine uses (default: those of ``config`` on its own)."""
        self.model = model
        self.seed = seed
        director = director or config.sampling_director()
        self.chat_model = TrainingChatModel(
            model=model,
            tokenizer=tokenizer,
            model_name="flowsteer-director-training",
            max_new_tokens=director.max_action_tokens,
            temperature=director.temperature,
            top_p=director.top_p,
            max_batch_size=max(1, config.concurrency),
        )

    def before_rollout(self, step: int) -> None:
        """Eval mode (no LoRA dropout while sampling) and the step's seed sequence."""
        self.model.eval()
        self.chat_model.reseed(f"{self.seed}:{step}")
