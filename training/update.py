"""One CWRPO update on a batch of episodes: behaviour/reference log-probs, PPO epochs, minibatches,
gradient accumulation with exact global normalisation, all-reduce, clipping, optimizer step."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .batch import PolicyBatch
from .config import LossConfig
from .constrained import ConstraintReplay
from .distributed import DistContext, single_process
from .losses import get_policy_loss
from .policy import reference_logprobs, token_logprobs, trainable_parameters

__all__ = ["UpdateSettings", "fill_logprobs", "accumulate_gradients", "ppo_update"]


@dataclass(frozen=True)
class UpdateSettings:
    """What an update needs besides the model and the batch."""

    loss: LossConfig
    temperature: float = 1.0
    micro_batch_size: int = 8
    max_grad_norm: float = 1.0
    seed: int = 0
    replay: ConstraintReplay | None = None
    """Rebuilds the grammar masks of constrained turns (None: plain log-probs everywhere)."""


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def single_on_policy_update(loss: Any) -> bool:
    """One optimizer step on freshly recomputed log-probs (``ppo_epochs`` and ``num_minibatches``
    1): the behaviour policy is the current one, so the update's own forward pass, detached, gives
    the old log-probs (as TRL's GRPO does with one iteration) and a separate pass is saved."""
    return loss.old_logprobs == "recompute" and loss.ppo_epochs == 1 and loss.num_minibatches == 1


def fill_logprobs(model: Any, batch: PolicyBatch, settings: UpdateSettings, device: Any) -> dict[str, float]:
    """Set ``batch.old_logprobs`` (recomputed, or the engine's; ``None`` for a
    :func:`single_on_policy_update`, whose update fills them in) and ``batch.ref_logprobs`` (when
    beta > 0), in eval mode without gradients. Returns the engine/trainer log-prob gap."""
    import torch

    on_policy = single_on_policy_update(settings.loss)
    old = torch.zeros_like(batch.engine_logprobs)  # [R, T]
    ref = torch.zeros_like(batch.engine_logprobs) if settings.loss.beta else None  # [R, T]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        # nothing to precompute for a single on-policy update without a KL term
        chunks = [] if on_policy and ref is None else _chunks(range(batch.num_seqs), settings.micro_batch_size)
        for seqs in chunks:
            rows = batch.rows_of(seqs)
            sub = batch.select(seqs).to(device)
            width = sub.input_ids.shape[1]
            wanted = sub.loss_mask > 0
            if not on_policy:
                lp = token_logprobs(model, sub.input_ids, sub.attention_mask, temperature=settings.temperature,
                                    segments=sub.segments, replay=settings.replay, wanted=wanted)
                old[rows, :width] = lp.float().cpu()
            if ref is not None:
                rlp = reference_logprobs(model, sub.input_ids, sub.attention_mask, temperature=settings.temperature,
                                         segments=sub.segments, replay=settings.replay, wanted=wanted)
                ref[rows, :width] = rlp.float().cpu()
    model.train(was_training)
    batch.ref_logprobs = ref
    out: dict[str, float] = {}
    if on_policy:  # the update's own forward pass gives them (and the gap)
        batch.old_logprobs = None
    else:
        mask = batch.loss_mask
        out["engine_logprob_gap"] = float(((old - batch.engine_logprobs).abs() * mask).sum()
                                          / mask.sum().clamp(min=1.0))
        batch.old_logprobs = batch.engine_logprobs.clone() if settings.loss.old_logprobs == "engine" else old
    if settings.replay is not None:
        out["constrained_tokens"] = float(sum(s.length for row in batch.segments for s in row))
        out["constraint_replay_fallbacks"] = float(settings.replay.fallbacks)
    return out


def accumulate_gradients(
    model: Any,
    batch: PolicyBatch,
    seqs: Sequence[int],
    settings: UpdateSettings,
    device: Any,
    dist: DistContext | None = None,
) -> dict[str, float]:
    """Forward/backward the trajectories ``seqs`` in micro-batches; gradients add up to those of the
    whole minibatch over every rank (denominators are all-reduced first). No optimizer step."""
    dist = dist or single_process()
    loss_fn: Callable[..., Any] = get_policy_loss(settings.loss.name)
    tokens = float(batch.loss_mask[batch.rows_of(seqs)].sum())
    total_tokens, total_seqs = dist.all_reduce_sum([tokens, float(len(seqs))])
    sums: dict[str, float] = defaultdict(float)
    gap_sum: float | None = None
    for micro in _chunks(seqs, settings.micro_batch_size):
        sub = batch.select(micro).to(device)
        logp = token_logprobs(model, sub.input_ids, sub.attention_mask, temperature=settings.temperature,
                              segments=sub.segments, replay=settings.replay, wanted=sub.loss_mask > 0)
        old = sub.old_logprobs
        if old is None:  # a single on-policy update: the old policy is this one
            old = logp.detach()
            gap = float(((old.float().cpu() - sub.engine_logprobs.float().cpu()).abs() * sub.loss_mask.cpu()).sum())
            gap_sum = (gap_sum or 0.0) + gap
        loss, metrics = loss_fn(
            logp, old, sub.advantages, sub.loss_mask,
            config=settings.loss, ref_logprobs=sub.ref_logprobs, seq_index=sub.seq_index,
            num_tokens=total_tokens, num_seqs=total_seqs,
        )
        loss.backward()
        weight = metrics.get("tokens", 0.0)
        for key, value in metrics.items():
            if key == "tokens":
                sums["tokens"] += value
            elif key == "loss":
                sums["loss"] += value  # each micro loss is already its share of the total
            else:
                sums[key] += value * weight
    weight = max(sums.get("tokens", 0.0), 1.0)
    out = {k: (v if k in ("tokens", "loss") else v / weight) for k, v in sums.items()}
    if gap_sum is not None:  # per token of the loss mask, as fill_logprobs reports it
        out["engine_logprob_gap"] = gap_sum / max(tokens, 1.0)
    return out


def ppo_update(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    batch: PolicyBatch,
    settings: UpdateSettings,
    device: Any,
    *,
    step: int,
    dist: DistContext | None = None,
) -> dict[str, float]:
    """``ppo_epochs`` x ``num_minibatches`` optimizer updates on ``batch``; returns averaged metrics."""
    import torch

    dist = dist or single_process()
    params = trainable_parameters(model)
    generator = torch.Generator().manual_seed(settings.seed * 100_003 + step)
    records: list[dict[str, float]] = []
    model.train()
    for _ in range(settings.loss.ppo_epochs):
        order = torch.randperm(batch.num_seqs, generator=generator).tolist()
        # exactly num_minibatches parts (some may be empty) so every rank takes the same number of steps
        n_mb = settings.loss.num_minibatches
        for part in range(n_mb):
            minibatch = order[part * len(order) // n_mb : (part + 1) * len(order) // n_mb]
            optimizer.zero_grad(set_to_none=True)
            metrics = accumulate_gradients(model, batch, sorted(minibatch), settings, device, dist)
            dist.all_reduce_gradients(params)
            if settings.max_grad_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            else:
                norm = torch.linalg.vector_norm(torch.stack(
                    [p.grad.norm() for p in params if p.grad is not None] or [torch.zeros(())]))
            metrics["grad_norm"] = float(norm)
            metrics["lr"] = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            records.append(metrics)
    optimizer.zero_grad(set_to_none=True)
    keys = {k for r in records for k in r}
    return {k: sum(r.get(k, 0.0) for r in records) / len(records) for k in keys}
