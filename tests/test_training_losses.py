"""CWRPO losses and advantages against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from flowsteer.errors import UserError  # noqa: E402
from flowsteer.training.advantages import group_advantages  # noqa: E402
from flowsteer.training.config import LossConfig  # noqa: E402
from flowsteer.training.losses import (  # noqa: E402
    aggregate,
    cwrpo_loss,
    get_policy_loss,
    k3_kl,
    policy_loss_names,
    register_policy_loss,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_ratio_and_clip_on_both_sides_by_hand():
    # one row, three policy tokens; ratios exp(0)=1, exp(ln 1.5)=1.5, exp(ln 0.5)=0.5
    old = t([[0.0, 0.0, 0.0]])
    new = t([[0.0, math.log(1.5), math.log(0.5)]])
    mask = t([[1.0, 1.0, 1.0]])
    cfg = LossConfig(eps_low=0.2, eps_high=0.3, beta=0.0)
    # A > 0: min(r A, clip(r) A) -> tokens 1, min(1.5,1.3)=1.3, min(0.5,0.8)=0.5
    loss, metrics = cwrpo_loss(new, old, t([2.0]), mask, config=cfg)
    assert loss.item() == pytest.approx(-2.0 * (1.0 + 1.3 + 0.5) / 3)
    assert metrics["clip_fraction"] == pytest.approx(1 / 3)  # only the high side is active for A > 0
    assert metrics["clip_high_fraction"] == pytest.approx(1 / 3)
    # A < 0: min(r A, clip(r) A) = A * max(r, clip r) -> 1, 1.5, 0.8
    loss, metrics = cwrpo_loss(new, old, t([-1.0]), mask, config=cfg)
    assert loss.item() == pytest.approx((1.0 + 1.5 + 0.8) / 3)
    assert metrics["clip_low_fraction"] == pytest.approx(1 / 3)
    assert metrics["ratio_mean"] == pytest.approx((1 + 1.5 + 0.5) / 3)


def test_clipped_tokens_get_no_gradient():
    old = t([[0.0, 0.0]])
    new = t([[math.log(1.5), math.log(1.1)]]).requires_grad_(True)
    loss, _ = cwrpo_loss(new, old, t([1.0]), t([[1.0, 1.0]]), config=LossConfig(beta=0.0))
    loss.backward()
    assert new.grad[0, 0].item() == 0.0  # ratio 1.5 > 1.2 with A > 0: clipped
    assert new.grad[0, 1].item() == pytest.approx(-1.1 / 2)  # d(-r A / 2)/dlogp = -r A / 2


def test_k3_kl_by_hand_and_in_the_loss():
    logp = t([[math.log(0.5), math.log(0.2)]])
    ref = t([[math.log(0.25), math.log(0.2)]])
    kl = k3_kl(logp, ref)
    # exp(ref - logp) - (ref - logp) - 1 = 0.5 - ln 0.5 - 1 ; 0 when equal
    assert kl[0, 0].item() == pytest.approx(0.5 - math.log(0.5) - 1)
    assert kl[0, 1].item() == pytest.approx(0.0)
    mask = t([[1.0, 1.0]])
    cfg = LossConfig(beta=0.1)
    loss, metrics = cwrpo_loss(logp, logp.clone(), t([0.0]), mask, ref_logprobs=ref, config=cfg)
    assert loss.item() == pytest.approx(0.1 * (0.5 - math.log(0.5) - 1) / 2)
    assert metrics["kl"] == pytest.approx((0.5 - math.log(0.5) - 1) / 2)
    with pytest.raises(UserError, match="ref_logprobs"):
        cwrpo_loss(logp, logp, t([0.0]), mask, config=cfg)


def test_masked_tokens_do_not_count_even_with_huge_values():
    old = t([[0.0, 0.0, 0.0]])
    new = t([[0.0, 500.0, 0.0]])  # would overflow exp() if the masked token were used
    mask = t([[1.0, 0.0, 1.0]])
    loss, metrics = cwrpo_loss(new, old, t([1.0]), mask, config=LossConfig(beta=0.0))
    assert loss.item() == pytest.approx(-1.0)
    assert metrics["tokens"] == 2.0
    assert math.isfinite(metrics["ratio_max"])


def test_aggregation_modes_by_hand():
    values = t([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    # rows 0 and 1 are one trajectory (two contexts), row 2 another
    seq = torch.tensor([0, 0, 1])
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(20 / 6)
    # trajectory 0: tokens 1,2,3,4 -> mean 2.5 ; trajectory 1: 10, 0 -> mean 5
    assert aggregate(values, mask, "seq-mean-token-mean", seq_index=seq).item() == pytest.approx((2.5 + 5) / 2)
    assert aggregate(values, mask, "seq-mean-token-sum", seq_index=seq).item() == pytest.approx((10 + 10) / 2)
    # without seq_index every row is its own trajectory
    assert aggregate(values, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4 + 5) / 3)
    with pytest.raises(UserError, match="token-mean"):
        aggregate(values, mask, "mean")


def test_global_denominators_make_micro_batches_add_up():
    values = t([[1.0, 2.0], [3.0, 5.0], [7.0, 0.0]])
    mask = t([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        full = aggregate(values, mask, mode)
        part_a = aggregate(values[:1], mask[:1], mode, num_tokens=5, num_seqs=3)
        part_b = aggregate(values[1:], mask[1:], mode, num_tokens=5, num_seqs=3)
        assert (part_a + part_b).item() == pytest.approx(full.item()), mode


def test_registry_lists_valid_names():
    assert get_policy_loss("cwrpo") is cwrpo_loss
    assert {"cwrpo", "reinforce"} <= set(policy_loss_names())
    with pytest.raises(UserError, match="cwrpo"):
        get_policy_loss("ppo2")

    @register_policy_loss("test-only-zero")
    def zero(logprobs, old_logprobs, advantages, mask, **_):
        return logprobs.sum() * 0, {}

    assert get_policy_loss("test-only-zero") is zero


def test_reinforce_is_minus_advantage_logp():
    logp = t([[-1.0, -2.0]])
    loss, _ = get_policy_loss("reinforce")(logp, logp, t([0.5]), t([[1.0, 1.0]]), config=LossConfig(beta=0.0))
    assert loss.item() == pytest.approx(0.5 * 1.5)


def test_group_advantages_z_score_and_zero_variance():
    rewards = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0]
    groups = ["a", "a", "b", "b", "c", "c"]
    result = group_advantages(rewards, groups, eps=0.0)
    # group a: mean .5, population std .5 -> +1, -1 ; b and c have zero variance -> 0
    assert result.advantages == pytest.approx((1.0, -1.0, 0.0, 0.0, 0.0, 0.0))
    assert result.groups == 3 and result.zero_variance_groups == 2
    assert result.zero_variance_fraction == pytest.approx(2 / 3)
    unscaled = group_advantages(rewards, groups, scale_std=False)
    assert unscaled.advantages == pytest.approx((0.5, -0.5, 0.0, 0.0, 0.0, 0.0))
    unbiased = group_advantages([1.0, 0.0], ["g", "g"], unbiased_std=True, eps=0.0)
    assert unbiased.advantages == pytest.approx((0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)))
    interleaved = group_advantages([3.0, 1.0, 1.0, 3.0], [0, 1, 0, 1], eps=0.0)
    assert interleaved.advantages == pytest.approx((1.0, -1.0, -1.0, 1.0))
