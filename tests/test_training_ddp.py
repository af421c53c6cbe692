"""Data-parallel training on CPU (gloo, 2 processes): the summed gradients equal one process's
gradients on the concatenated batch, and one optimizer update gives the same weights."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from flowsteer.training.advantages import group_advantages  # noqa: E402
from flowsteer.training.batch import build_batch  # noqa: E402
from flowsteer.training.config import LoRAConfig, LossConfig, ModelConfig  # noqa: E402
from flowsteer.training.distributed import DistContext  # noqa: E402
from flowsteer.training.toy import ToyTokenRecord  # noqa: E402
from flowsteer.training.update import UpdateSettings, accumulate_gradients, fill_logprobs, ppo_update  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


GROUPS, G = 4, 3
SETTINGS = UpdateSettings(loss=LossConfig(beta=0.05, aggregation="seq-mean-token-mean", num_minibatches=1),
                          temperature=0.7, micro_batch_size=2, max_grad_norm=1.0)


def episodes():
    """Deterministic multi-turn token records with rewards, G per group."""
    rng = random.Random(0)
    out = []
    for g in range(GROUPS):
        for _ in range(G):
            prompt = [1] + [rng.randrange(5, 300) for _ in range(rng.randrange(3, 8))]
            first = [rng.randrange(5, 300) for _ in range(rng.randrange(1, 5))]
            feedback = [rng.randrange(5, 300) for _ in range(3)]
            second = [rng.randrange(5, 300) for _ in range(rng.randrange(1, 4))]
            records = (ToyTokenRecord(prompt, first, [-1.0] * len(first)),
                       ToyTokenRecord(prompt + first + feedback, second, [-1.0] * len(second)))
            out.append((g, records, rng.random()))
    return out


def model():
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer
    from flowsteer.training.policy import prepare_policy

    torch.manual_seed(0)
    tok = build_tiny_tokenizer()
    return prepare_policy(build_tiny_model(tok, seed=2), ModelConfig(), LoRAConfig(r=4, alpha=8, dropout=0.0))


def gradients_and_update(eps, dist):
    policy = model()
    # perturb the adapter so the B matrices are non-zero and every LoRA weight gets a gradient
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    adv = group_advantages([r for _, _, r in eps], [g for g, _, _ in eps])
    batch = build_batch([recs for _, recs, _ in eps], adv.advantages)
    fill_logprobs(policy, batch, SETTINGS, torch.device("cpu"))
    policy.train()
    accumulate_gradients(policy, batch, list(range(batch.num_seqs)), SETTINGS, torch.device("cpu"), dist)
    params = [p for p in policy.parameters() if p.requires_grad]
    dist.all_reduce_gradients(params)
    grads = [p.grad.clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ppo_update(policy, optimizer, None, batch, SETTINGS, torch.device("cpu"), step=0, dist=dist)
    return grads, [p.detach().clone() for p in params]


def _worker(rank, world, init_file, out_dir):
    import torch.distributed as tdist

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        dist = DistContext(rank=rank, world_size=world, backend="gloo")
        mine = [e for e in episodes() if e[0] % world == rank]  # whole groups per rank
        grads, params = gradients_and_update(mine, dist)
        torch.save({"grads": grads, "params": params}, f"{out_dir}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters importing torch/transformers: 20 s idle, minutes on a busy machine
def test_two_gloo_processes_match_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single_grads, single_params = gradients_and_update(episodes(), DistContext())
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(got["grads"]) == len(single_grads)
        # float32 sums in a different order (and padding widths): equal up to rounding
        scale = max(float(g.abs().max()) for g in single_grads)
        for a, b in zip(got["grads"], single_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale)
        for a, b in zip(got["params"], single_params, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in single_grads)
