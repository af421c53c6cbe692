"""Policy losses: small pure tensor functions returning ``(loss, metrics)``.

Every tensor is aligned to the padded token grid ``[R, T]`` (R rows, T positions): ``logprobs[r, t]``
is the log-probability of token ``t`` of row ``r`` given the tokens before it. A trajectory may span
several rows (one per context the policy saw), so ``seq_index[r]`` names the trajectory of row ``r``;
the aggregation modes that average per trajectory use it.

The CWRPO objective (spec section 9.1) per token, with ratio ``rho = exp(logp - old_logp)``::

    loss_t = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3(ref || pi)
    k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1

aggregated with ``mask`` (1 on tokens the policy sampled, 0 on prompts, canvas feedback and padding).
Losses never call ``backward()``; the trainer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowsteer.errors import UserError

from .config import AGGREGATION_MODES, LossConfig

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "aggregate",
    "masked_mean",
    "k3_kl",
    "cwrpo_loss",
    "reinforce_loss",
    "register_policy_loss",
    "get_policy_loss",
    "policy_loss_names",
    "PolicyLossFn",
]

PolicyLossFn = Callable[..., "tuple[Tensor, dict[str, float]]"]
_POLICY_LOSSES: dict[str, PolicyLossFn] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Register a policy loss under ``name`` (selected with ``loss.name`` in the config)."""

    def decorator(fn: PolicyLossFn) -> PolicyLossFn:
        if name in _POLICY_LOSSES and _POLICY_LOSSES[name] is not fn:
            raise UserError(f"policy loss {name!r} is already registered; pick another name")
        _POLICY_LOSSES[name] = fn
        return fn

    return decorator


def get_policy_loss(name: str) -> PolicyLossFn:
    """The loss registered as ``name``; unknown names raise with the valid ones listed."""
    try:
        return _POLICY_LOSSES[name]
    except KeyError:
        raise UserError(f"unknown policy loss {name!r}: valid names are {policy_loss_names()}") from None


def policy_loss_names() -> list[str]:
    """Names of the registered policy losses."""
    return sorted(_POLICY_LOSSES)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str,
    *,
    seq_index: Tensor | None = None,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> Tensor:
    """Reduce per-token ``values`` ``[R, T]`` to a scalar.

    * ``token-mean``: sum over masked tokens / number of masked tokens.
    * ``seq-mean-token-mean``: per trajectory, the mean over its masked tokens; then the mean over
      trajectories (the paper's 1/N sum_i 1/|tau_i| sum_t).
    * ``seq-mean-token-sum``: per trajectory, the sum over its masked tokens; then the mean.

    ``num_tokens`` / ``num_seqs`` replace the local denominators when a batch is split into
    micro-batches or across processes: each part then contributes its exact share of the full-batch
    loss, so summed gradients equal those of one pass over the whole batch.
    """
    import torch

    if mode not in AGGREGATION_MODES:
        raise UserError(f"unknown aggregation mode {mode!r}: valid modes are {AGGREGATION_MODES}")
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        denominator = mask.sum() if num_tokens is None else torch.tensor(float(num_tokens))
        return (values * mask).sum() / denominator.clamp(min=1.0)
    if seq_index is None:
        seq_index = torch.arange(values.shape[0], device=values.device)  # [R] one trajectory per row
    n_seqs = int(seq_index.max().item()) + 1 if seq_index.numel() else 0
    row_sums = (values * mask).sum(-1)  # [R]
    seq_sums = values.new_zeros(n_seqs).index_add(0, seq_index, row_sums)  # [S]
    if mode == "seq-mean-token-mean":
        seq_counts = values.new_zeros(n_seqs).index_add(0, seq_index, mask.sum(-1))  # [S]
        per_seq = seq_sums / seq_counts.clamp(min=1.0)  # [S]
    else:
        per_seq = seq_sums  # [S]
    present = values.new_zeros(n_seqs).index_add(0, seq_index, torch.ones_like(row_sums)) > 0  # [S]
    denominator = present.sum().to(values.dtype) if num_seqs is None else torch.tensor(float(num_seqs))
    return per_seq[present].sum() / denominator.clamp(min=1.0)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(pi || ref): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    delta = ref_logprobs - logprobs  # [R, T]
    return delta.exp() - delta - 1.0


def _expand_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    return advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # [R, 1] or [R, T]


@register_policy_loss("cwrpo")
def cwrpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    config: LossConfig,
    ref_logprobs: Tensor | None = None,
    seq_index: Tensor | None = None,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip surrogate with asymmetric clipping plus ``beta`` x k3 KL to the reference.

    ``logprobs``/``old_logprobs``/``ref_logprobs``/``mask`` are ``[R, T]``; ``advantages`` is ``[R]``
    (one per row, i.e. per trajectory) or ``[R, T]``. Returns the aggregated loss and float metrics.
    """
    import torch

    mask = mask.to(logprobs.dtype)
    adv = _expand_advantages(advantages, logprobs).to(logprobs.dtype)  # [R, 1] or [R, T]
    log_ratio = (logprobs - old_logprobs) * mask  # [R, T] masked so padding cannot overflow exp
    ratio = log_ratio.exp()  # [R, T]
    clipped = ratio.clamp(1.0 - config.eps_low, 1.0 + config.eps_high)  # [R, T]
    pg_per_token = -torch.minimum(ratio * adv, clipped * adv)  # [R, T]
    per_token = pg_per_token
    kl_per_token = None
    if config.beta != 0.0:
        if ref_logprobs is None:
            raise UserError("loss.beta > 0 needs ref_logprobs: pass the reference log-probs or set beta: 0")
        kl_per_token = k3_kl(logprobs, ref_logprobs) * mask  # [R, T]
        per_token = per_token + config.beta * kl_per_token
    loss = aggregate(per_token, mask, config.aggregation, seq_index=seq_index,
                     num_tokens=num_tokens, num_seqs=num_seqs)
    with torch.no_grad():
        adv_full = adv.expand_as(ratio)
        low = (ratio < 1.0 - config.eps_low) & (adv_full < 0)
        high = (ratio > 1.0 + config.eps_high) & (adv_full > 0)
        metrics = {
            "loss": float(loss.detach()),
            "pg_loss": float(masked_mean(pg_per_token, mask)),
            "clip_fraction": float(masked_mean((low | high).to(mask.dtype), mask)),
            "clip_low_fraction": float(masked_mean(low.to(mask.dtype), mask)),
            "clip_high_fraction": float(masked_mean(high.to(mask.dtype), mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
            "ratio_max": float((ratio * mask).max()) if mask.any() else 1.0,
            # k3 of old vs new: how far the update moved the policy on the sampled tokens
            "approx_kl_old": float(masked_mean(k3_kl(logprobs, old_logprobs) * mask, mask)),
            "kl": float(masked_mean(kl_per_token, mask)) if kl_per_token is not None else 0.0,
            "tokens": float(mask.sum()),
        }
    return loss, metrics


@register_policy_loss("reinforce")
def reinforce_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    config: LossConfig,
    ref_logprobs: Tensor | None = None,
    seq_index: Tensor | None = None,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Group-normalised REINFORCE, ``-A * logp`` (what the reference code trained; for ablations).

    No ratio, clipping or KL; ``old_logprobs``/``ref_logprobs`` are accepted for a uniform signature.
    """
    mask = mask.to(logprobs.dtype)
    adv = _expand_advantages(advantages, logprobs).to(logprobs.dtype)
    per_token = -adv * logprobs  # [R, T]
    loss = aggregate(per_token, mask, config.aggregation, seq_index=seq_index,
                     num_tokens=num_tokens, num_seqs=num_seqs)
    metrics: dict[str, Any] = {"loss": float(loss.detach()), "pg_loss": float(loss.detach()),
                               "clip_fraction": 0.0, "kl": 0.0, "tokens": float(mask.sum())}
    return loss, metrics
