"""A one-turn toy environment for exercising the trainer without a canvas (tests, smoke runs).

The policy answers each task's question once; the reward is the share of sampled tokens that fall in
``target_ids``. Sampling uses per-episode generators seeded by ``(seed, step, episode)``, so a run is
bit-for-bit reproducible on CPU -- which the checkpoint/resume and DDP tests rely on. It goes
through the same :class:`~flowsteer.training.rollout.Episode` -> update path as the director.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .rollout import Episode

__all__ = ["ToyTokenRecord", "ToyRollout"]


@dataclass(frozen=True)
class ToyTokenRecord:
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]


class ToyRollout:
    """Reward = fraction of completion tokens in ``target_ids`` (a dense signal a tiny model can learn)."""

    def __init__(self, model: Any, tokenizer: Any, target_ids: Iterable[int], *, seed: int = 0,
                 max_new_tokens: int = 8, temperature: float = 1.0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.target_ids = frozenset(int(t) for t in target_ids)
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def prompt_ids(self, question: str) -> list[int]:
        """The chat-templated prompt, tokenised once (the ids the policy is trained on)."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                  add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def collect(self, tasks: Sequence[Any], group_size: int, *, step: int) -> list[Episode]:
        import torch

        from flowsteer.models._sampling import SamplingParams, sample_batch

        prompts = [self.prompt_ids(task.question) for task in tasks for _ in range(group_size)]
        generators = [torch.Generator().manual_seed(self.seed * 1_000_003 + step * 10_007 + i)
                      for i in range(len(prompts))]
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        self.model.eval()
        sampled = sample_batch(self.model, self.tokenizer, prompts, params, None, eos, generators)
        episodes = []
        for i, (prompt, result) in enumerate(zip(prompts, sampled, strict=True)):
            ids = result.completion_ids
            reward = sum(t in self.target_ids for t in ids) / max(len(ids), 1)
            record = ToyTokenRecord(prompt, list(ids), list(result.logprobs))
            task = tasks[i // group_size]
            episodes.append(Episode(group=f"{i // group_size}:{task.key}", tokens=(record,), reward=reward,
                                    metrics={"completion_tokens": float(len(ids))}))
        return episodes
