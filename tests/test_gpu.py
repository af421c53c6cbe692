"""The CUDA paths of training, on a real GPU (``make test-gpu``; skipped where no GPU is present).

The default suite runs everything else on CPU in fp32; these check what only a GPU exercises:
bf16 weights chosen by ``dtype: auto``, the autocast forward, a CWRPO update in bf16 whose loss is
finite and moves the LoRA weights (and only them), and the CUDA memory of that step.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu on a GPU machine)"),
]

from flowsteer.tasks import Task  # noqa: E402
from flowsteer.training.config import config_from_dict  # noqa: E402
from flowsteer.training.policy import (  # noqa: E402
    prepare_policy,
    resolve_device,
    resolve_dtype,
    token_logprobs,
)
from flowsteer.training.trainer import CWRPOTrainer, seed_everything  # noqa: E402


def _config(tmp_path, steps: int = 2):
    return config_from_dict({
        "seed": 0,
        "max_steps": steps,
        "model": {"device": "cuda", "dtype": "auto"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "rollout": {"tasks_per_step": 2, "group_size": 4}, "director": {"temperature": 1.0},
        "loss": {"beta": 0.01},
        "optim": {"lr": 1e-2, "warmup_steps": 0, "micro_batch_size": 8},
        "data": {"datasets": ["toy"]},
        "logging": {"run_dir": str(tmp_path), "save_every": 0},
    })


def _policy(config):
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    device = resolve_device(config.model)  # as load_policy places a checkpoint it loads
    model = build_tiny_model(tok, seed=0).to(device=device, dtype=resolve_dtype(config.model, device))
    return prepare_policy(model, config.model, config.lora), tok


def test_auto_dtype_is_bf16_on_cuda_and_the_forward_runs_there(tmp_path):
    config = _config(tmp_path)
    model, tok = _policy(config)
    weights = {p.dtype for p in model.parameters()}
    assert torch.bfloat16 in weights, weights
    assert next(model.parameters()).device.type == "cuda"
    ids = torch.tensor([tok.encode("add Plan then finish")], device="cuda")
    logp = token_logprobs(model, ids, torch.ones_like(ids), temperature=1.0)
    assert logp.device.type == "cuda" and torch.isfinite(logp).all()


def test_a_bf16_cwrpo_step_updates_only_the_adapter_within_its_memory(tmp_path):
    from flowsteer.training.toy import ToyRollout

    seed_everything(0)
    config = _config(tmp_path)
    model, tok = _policy(config)
    trainable = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().float().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora" in n for n in trainable)
    torch.cuda.reset_peak_memory_stats()
    rollout = ToyRollout(model, tok, target_ids=range(100, 164), seed=0, max_new_tokens=6)
    tasks = [Task(f"Write something, number {i}.", id=str(i)) for i in range(4)]
    history = CWRPOTrainer(config, model=model, tokenizer=tok, rollout=rollout, tasks=tasks).train()
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    after = dict(model.named_parameters())
    assert any(not torch.equal(after[n].detach().float(), v) for n, v in trainable.items())
    assert all(torch.equal(after[n].detach().float(), v) for n, v in frozen.items())
    assert 0 < peak_mb < 2048, peak_mb  # a tiny model: far below any card; a leak would show here
    print(f"bf16 CWRPO step on {torch.cuda.get_device_name()}: peak {peak_mb:.0f} MiB")
