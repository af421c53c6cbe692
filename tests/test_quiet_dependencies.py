"""Our calls into transformers and peft raise none of their deprecation warnings: a LoRA wrap and
sampling from a LoRA-wrapped model pass the current argument names (the warnings otherwise fill
every training log and test report)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("peft")

from flowsteer.models._sampling import SamplingParams, sample_batch  # noqa: E402
from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402
from flowsteer.training.config import LoRAConfig, ModelConfig  # noqa: E402
from flowsteer.training.policy import prepare_policy, token_logprobs, wrap_lora  # noqa: E402


def test_a_lora_wrap_and_sampling_through_it_raise_no_deprecation_warning():
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = wrap_lora(model, LoRAConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
        prompt = tokenizer("What is 2 + 2?")["input_ids"]
        out = sample_batch(wrapped, tokenizer, [prompt, prompt[:3]], SamplingParams(max_new_tokens=4, temperature=0.0))
    assert all(1 <= len(s.completion_ids) <= 4 for s in out)
    noisy = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert noisy == []


def test_a_checkpointed_lora_policy_trains_without_deprecation_warnings():
    import torch

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = prepare_policy(model, ModelConfig(name_or_path="tiny", gradient_checkpointing=True),
                                LoRAConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
        policy.train()
        ids = torch.tensor([tokenizer("What is 2 + 2? It is 4.")["input_ids"]])
        lp = token_logprobs(policy, ids, torch.ones_like(ids))
        lp.sum().backward()
    assert any(p.grad is not None for p in policy.parameters() if p.requires_grad)
    noisy = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert noisy == []
