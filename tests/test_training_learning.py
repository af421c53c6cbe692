"""Learning is demonstrated, not assumed: mean reward rises over a fixed number of CWRPO steps.

The environment is the one-turn toy of :mod:`flowsteer.training.toy`, run through the same
trainer/update path (episodes -> group advantages -> token batch -> PPO update) as the director.
The full director/canvas loop is exercised end to end by the slow CLI test in
``test_training_checkpoint.py``; on a tiny *random* director, 20-30 CPU steps did not show a clear
reward rise (the reward stayed around -0.6 +- 0.15), so no learning claim is made for it here.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from flowsteer.tasks import Task  # noqa: E402
from flowsteer.training.config import config_from_dict  # noqa: E402
from flowsteer.training.policy import prepare_policy  # noqa: E402
from flowsteer.training.trainer import CWRPOTrainer, seed_everything  # noqa: E402


def mean(xs):
    return sum(xs) / len(xs)


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, thread oversubscription costs more than it gives."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_reward_rises_on_the_toy_environment(tmp_path, one_thread):
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer
    from flowsteer.training.toy import ToyRollout

    steps = 20
    config = config_from_dict({
        "seed": 0,
        "max_steps": steps,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "rollout": {"tasks_per_step": 2, "group_size": 8, "temperature": 1.0},
        "loss": {"beta": 0.01, "ppo_epochs": 2},
        "optim": {"lr": 1e-2, "warmup_steps": 1, "micro_batch_size": 16},
        "data": {"datasets": ["toy"]},
        "logging": {"run_dir": str(tmp_path), "save_every": 0},
    })
    seed_everything(0)
    tok = build_tiny_tokenizer()
    model = prepare_policy(build_tiny_model(tok, seed=0), config.model, config.lora)
    rollout = ToyRollout(model, tok, target_ids=range(100, 164), seed=0, max_new_tokens=6)
    tasks = [Task(f"Write something, number {i}.", id=str(i)) for i in range(8)]
    history = CWRPOTrainer(config, model=model, tokenizer=tok, rollout=rollout, tasks=tasks).train()
    rewards = [m["reward_mean"] for m in history]
    assert len(rewards) == steps
    # 64 of ~512 tokens are rewarded: a random policy scores ~0.12
    assert mean(rewards[:3]) < 0.3
    assert mean(rewards[-3:]) > mean(rewards[:3]) + 0.2, rewards  # seen: 0.24 -> 0.55
    assert all(m["kl"] >= 0 for m in history) and history[-1]["kl"] > 0
