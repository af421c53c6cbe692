"""``CWRPOTrainer``: the RL loop that trains the Flow-Director.

Each step: draw B tasks; play G episodes per task with the current policy (concurrently, against
fresh canvases); reward each trajectory; normalise advantages within each task's group; build the
padded batch from the sampled token ids; recompute behaviour and reference log-probs; run the PPO
epochs/minibatches; log one JSONL line; checkpoint every N steps.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .advantages import group_advantages
from .batch import build_batch
from .checkpoint import TrainerState, latest_checkpoint, load_checkpoint, recover_checkpoints, save_checkpoint
from .config import CWRPOConfig, config_to_dict
from .constrained import ConstraintReplay
from .distributed import DistContext, single_process
from .policy import trainable_parameters
from .rollout import Episode, RolloutSource
from .sampler import TaskSampler
from .update import UpdateSettings, fill_logprobs, ppo_update

__all__ = ["CWRPOTrainer", "seed_everything", "lr_lambda"]

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(warmup: int, total: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` updates, then cosine decay to ``min_ratio`` at ``total``."""

    def factor(update: int) -> float:
        if update < warmup:
            return (update + 1) / warmup
        progress = min(1.0, (update - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class CWRPOTrainer:
    """Trains ``model`` (usually a peft LoRA model) on episodes from ``rollout``."""

    def __init__(
        self,
        config: CWRPOConfig,
        *,
        model: Any,
        tokenizer: Any,
        rollout: RolloutSource,
        tasks: Sequence[Any],
        dist: DistContext | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        import torch

        from flowsteer.errors import UserError

        from .policy import has_adapter

        if config.loss.beta and not has_adapter(model):
            raise UserError("loss.beta > 0 needs a LoRA adapter (the KL reference is the model with the adapter "
                            "disabled): enable lora, or set loss.beta: 0 for full fine-tuning")
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.rollout = rollout
        self.dist = dist or single_process()
        self.on_step = on_step
        self.device = next(model.parameters()).device
        self.run_dir = Path(config.logging.run_dir)
        self.step = 0
        self.tasks = list(tasks)
        self.sampler = TaskSampler(self.tasks, seed=config.seed, shuffle=config.data.shuffle)
        optim = config.optim
        self.optimizer = torch.optim.AdamW(trainable_parameters(model), lr=optim.lr, betas=optim.betas,
                                           weight_decay=optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(optim.warmup_steps, config.optimizer_updates, optim.min_lr_ratio))
        self.settings = UpdateSettings(loss=config.loss, temperature=config.director_config.temperature,
                                       micro_batch_size=optim.micro_batch_size,
                                       max_grad_norm=optim.max_grad_norm, seed=config.seed,
                                       replay=ConstraintReplay(tokenizer, model=model)
                                       if config.loss.replay_constraint and tokenizer is not None else None)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else 0
        self._sinks: list[Any] | None = None

    # -- construction from a config file -------------------------------------------------------
    @classmethod
    def from_config(cls, config: CWRPOConfig, *, dist: DistContext | None = None,
                    on_step: Callable[[dict[str, float]], None] | None = None) -> CWRPOTrainer:
        """Load the datasets, the policy (with LoRA), the HF engine, the executor and the director."""
        from .setup import build_components

        seed_everything(config.seed)
        for module in config.data.custom_operators:
            importlib.import_module(module)
        model, tokenizer, rollout, tasks = build_components(config)
        return cls(config, model=model, tokenizer=tokenizer, rollout=rollout, tasks=tasks, dist=dist,
                   on_step=on_step)

    # -- the loop ------------------------------------------------------------------------------
    def train(self, *, resume: bool = False, until: int | None = None) -> list[dict[str, float]]:
        """Run until ``max_steps`` (or stop early after step ``until``, checkpointing there); with
        ``resume`` continue from the newest checkpoint of the run."""
        if resume:
            self.resume()
        elif self.dist.is_main:
            recover_checkpoints(self.run_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(self.config), sort_keys=False))
        if self.config.warmstart.enabled and self.step == 0:
            self.warm_start()
        history = []
        every = self.config.logging.save_every
        last = self.config.max_steps if until is None else min(until, self.config.max_steps)
        try:
            while self.step < last:
                metrics = self.train_step()
                history.append(metrics)
                if every and self.step % every == 0 and self.step < last:
                    self.save()
            self.save()
        finally:
            self._close_sinks()
            close = getattr(self.rollout, "close", None)
            if callable(close):
                close()
        return history

    def warm_start(self) -> Any:
        """The supervised warm start (``config.warmstart``); its stages reuse what the run folder holds."""
        from .warmstart import run_warmstart

        result = run_warmstart(self.config, model=self.model, tokenizer=self.tokenizer, rollout=self.rollout,
                               tasks=self.tasks, run_dir=self.run_dir)
        logger.info("warm start done: %d demonstrations, losses %s", result.demos,
                    ", ".join(f"{x:.3f}" for x in result.losses))
        return result

    def train_step(self) -> dict[str, float]:
        """One step: rollouts, update, metrics. Returns the step's metrics."""
        started = time.perf_counter()
        rollout_cfg = self.config.rollout
        tasks = self.dist.shard(self.sampler.next(rollout_cfg.tasks_per_step))
        episodes = asyncio.run(self.rollout.collect(tasks, rollout_cfg.group_size, step=self.step))
        rolled = time.perf_counter()
        metrics = self.update(episodes)
        self.step += 1
        metrics.update(step=self.step, time_rollout=rolled - started, time_update=time.perf_counter() - rolled,
                       time_step=time.perf_counter() - started)
        self._log(metrics)
        return metrics

    def update(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """Advantages, batch, log-probs and the PPO update for one step's episodes."""
        loss_cfg = self.config.loss
        adv = group_advantages([e.reward for e in episodes], [e.group for e in episodes],
                               scale_std=loss_cfg.scale_std, eps=loss_cfg.adv_eps)
        max_row = self.config.director_config.context_budget + self.config.director_config.max_action_tokens
        batch = build_batch([e.tokens for e in episodes], adv.advantages, pad_token_id=self.pad_token_id,
                            max_row_tokens=max_row, mask_forced=loss_cfg.mask_forced_tokens)
        started = time.perf_counter()
        metrics = fill_logprobs(self.model, batch, self.settings, self.device)
        metrics["time_logprobs"] = time.perf_counter() - started
        metrics.update(ppo_update(self.model, self.optimizer, self.scheduler, batch, self.settings, self.device,
                                  step=self.step, dist=self.dist))
        metrics.update(self._episode_metrics(episodes))
        self._log_episodes(episodes)
        zero, groups = self.dist.all_reduce_sum([adv.zero_variance_groups, adv.groups])
        metrics.update(zero_variance_groups=zero, zero_variance_fraction=zero / groups if groups else 0.0,
                       trained_episodes=float(batch.num_seqs))
        return metrics

    def _episode_metrics(self, episodes: Sequence[Episode]) -> dict[str, float]:
        rewards = [e.reward for e in episodes]
        keys = sorted({k for e in episodes for k in e.metrics} - {"reward"})
        sums = [float(len(rewards)), sum(rewards), sum(r * r for r in rewards)]
        sums += [sum(float(e.metrics.get(k, 0.0)) for e in episodes) for k in keys]
        total = self.dist.all_reduce_sum(sums)
        n = max(total[0], 1.0)
        mean = total[1] / n
        out = {"episodes": total[0], "reward_mean": mean,
               "reward_std": math.sqrt(max(total[2] / n - mean * mean, 0.0))}
        out.update({k: v / n for k, v in zip(keys, total[3:], strict=True)})
        return out

    # -- logging -------------------------------------------------------------------------------
    def _log(self, metrics: dict[str, float]) -> None:
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(metrics, sort_keys=True) + "\n")
            for sink in self._open_sinks():
                sink(metrics)
        logger.info("step %d reward %.3f kl %.4f", self.step, metrics.get("reward_mean", 0.0), metrics.get("kl", 0.0))
        if self.on_step is not None:
            self.on_step(metrics)

    def _log_episodes(self, episodes: Sequence[Episode]) -> None:
        """Each episode's record (task, actions, workflow, answer, reward parts) to ``episodes.jsonl``."""
        if not self.dist.is_main or not any(e.record for e in episodes):
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "episodes.jsonl", "a", encoding="utf-8") as fh:
            for e in episodes:
                fh.write(json.dumps({"step": self.step + 1, "group": e.group, **dict(e.record)}, default=str) + "\n")

    def _open_sinks(self) -> list[Any]:
        if self._sinks is not None:
            return self._sinks
        from .sinks import open_sinks

        self._sinks = open_sinks(self.config, self.run_dir)
        return self._sinks

    def _close_sinks(self) -> None:
        for sink in self._sinks or []:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Checkpoint the current step (main process only)."""
        path = None
        if self.dist.is_main:
            state = TrainerState(step=self.step, data_state=self.sampler.state())
            path = save_checkpoint(self.run_dir, state, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, keep_last=self.config.logging.keep_last)
        self.dist.barrier()
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Load ``path`` (default: the newest checkpoint of the run). False when there is none."""
        if self.dist.is_main:
            recover_checkpoints(self.run_dir)
        self.dist.barrier()
        path = Path(path) if path is not None else latest_checkpoint(self.run_dir)
        if path is None:
            logger.warning("no checkpoint under %s: starting from scratch", self.run_dir)
            return False
        state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler)
        self.step = state.step
        self.sampler.load_state(state.data_state)
        if self.dist.is_main:
            _trim_metrics(self.run_dir / "metrics.jsonl", self.step)
            _trim_metrics(self.run_dir / "episodes.jsonl", self.step)
        logger.info("resumed from %s at step %d", path, self.step)
        return True


def _trim_metrics(metrics_file: Path, step: int) -> None:
    """Keep the metrics lines of steps up to ``step`` (later ones will be redone); a line that is not
    a JSON object (torn by a kill mid-write) is dropped with a warning."""
    if not metrics_file.is_file():
        return
    kept = []
    for number, line in enumerate(metrics_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            logger.warning("%s:%d: skipping a torn or malformed metrics line (a run killed mid-write)",
                           metrics_file, number)
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    metrics_file.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
