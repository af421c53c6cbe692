"""Side by side with TRL's GRPO loss on identical inputs.

TRL's loss lives in the method ``GRPOTrainer._compute_loss`` (trl 1.16). We call that very method on
a bare instance whose attributes hold the settings, with its log-prob helper replaced by one that
returns our tensors, so TRL's own code computes the ratio, clipping, k3 KL, masking and
aggregation. Its ``grpo`` loss type is our ``seq-mean-token-mean`` and ``bnpo`` is ``token-mean``.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

from flowsteer.training.config import LossConfig  # noqa: E402
from flowsteer.training.losses import cwrpo_loss  # noqa: E402


class _Accelerator:
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def trl_loss(logps, old, ref, adv, mask, *, loss_type, eps_low, eps_high, beta):
    trainer = object.__new__(trl_grpo.GRPOTrainer)
    trainer.__dict__.update(
        loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high, beta=beta,
        importance_sampling_level="token", off_policy_mask_threshold=None, top_entropy_quantile=1.0,
        use_vllm=False, aux_loss_enabled=False, _entropy_bonus_enabled=False,
        current_gradient_accumulation_steps=1, accelerator=_Accelerator(),
        model=SimpleNamespace(training=True), _metrics={"train": defaultdict(list)},
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False),
    )
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    width = logps.shape[1]
    inputs = {
        "prompt_ids": torch.zeros((logps.shape[0], 1), dtype=torch.long),
        "prompt_mask": torch.ones((logps.shape[0], 1), dtype=torch.long),
        "completion_ids": torch.zeros((logps.shape[0], width), dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    loss = trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize(("loss_type", "aggregation"), [("grpo", "seq-mean-token-mean"), ("bnpo", "token-mean")])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_same_loss_and_gradient_as_trl(loss_type, aggregation, beta):
    gen = torch.Generator().manual_seed(0)
    rows, width = 6, 9
    old = -torch.rand(rows, width, generator=gen, dtype=torch.float64) * 3
    logps = (old + torch.randn(rows, width, generator=gen, dtype=torch.float64) * 0.3).requires_grad_(True)
    ref = old + torch.randn(rows, width, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(rows, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([9, 5, 1, 7, 3, 8])
    mask = (torch.arange(width)[None, :] < lengths[:, None]).double()  # [R, T] variable completions

    expected, trl_metrics = trl_loss(logps, old, ref, adv, mask, loss_type=loss_type,
                                     eps_low=0.2, eps_high=0.28, beta=beta)
    (expected_grad,) = torch.autograd.grad(expected, logps)

    cfg = LossConfig(eps_low=0.2, eps_high=0.28, beta=beta, aggregation=aggregation)
    ours, metrics = cwrpo_loss(logps, old, adv, mask, ref_logprobs=ref, config=cfg)
    (our_grad,) = torch.autograd.grad(ours, logps)

    assert ours.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)
    assert torch.allclose(our_grad, expected_grad, atol=1e-12)
    assert metrics["clip_fraction"] == pytest.approx(trl_metrics["clip_ratio/region_mean"][0])
    if beta:
        assert metrics["kl"] == pytest.approx(trl_metrics["kl"][0])
