"""Checkpoint/resume: an interrupted run continues to exactly the parameters of an uninterrupted one."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from flowsteer.errors import UserError  # noqa: E402
from flowsteer.tasks import Task  # noqa: E402
from flowsteer.training.checkpoint import latest_checkpoint  # noqa: E402
from flowsteer.training.config import config_from_dict  # noqa: E402
from flowsteer.training.policy import prepare_policy  # noqa: E402
from flowsteer.training.toy import ToyRollout  # noqa: E402
from flowsteer.training.trainer import CWRPOTrainer, seed_everything  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TASKS = [Task(f"Say something about {n}.", id=f"t{n}") for n in range(5)]


def make_trainer(run_dir, max_steps):
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer

    config = config_from_dict({
        "seed": 7,
        "max_steps": max_steps,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},  # dropout on: the RNG state must be restored too
        "rollout": {"tasks_per_step": 2, "group_size": 3}, "director": {"temperature": 1.0},
        "loss": {"beta": 0.05, "ppo_epochs": 2, "num_minibatches": 2},
        "optim": {"lr": 5e-3, "warmup_steps": 2, "micro_batch_size": 2},
        "data": {"datasets": ["toy"]},
        "logging": {"run_dir": str(run_dir), "save_every": 2, "keep_last": 2, "progress": False},
    })
    seed_everything(config.seed)
    tok = build_tiny_tokenizer()
    model = prepare_policy(build_tiny_model(tok, seed=3), config.model, config.lora)
    targets = range(100, 180)
    rollout = ToyRollout(model, tok, targets, seed=config.seed, max_new_tokens=4)
    return CWRPOTrainer(config, model=model, tokenizer=tok, rollout=rollout, tasks=TASKS)


def trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_resume_gives_identical_parameters(tmp_path):
    full = make_trainer(tmp_path / "full", max_steps=4)
    initial = trainable(full.model)
    full_history = full.train()
    assert [m["step"] for m in full_history] == [1, 2, 3, 4]
    expected = trainable(full.model)

    first = make_trainer(tmp_path / "split", max_steps=4)
    first.train(until=2)  # an interrupted run
    ckpt = latest_checkpoint(tmp_path / "split")
    assert ckpt is not None and ckpt.name == "step_000002"
    assert {p.name for p in ckpt.iterdir()} >= {"trainable.safetensors", "adapter", "optimizer.pt",
                                                 "scheduler.pt", "rng.pt", "state.json"}
    assert json.loads((ckpt / "state.json").read_text())["data_state"]["position"] == 4

    torch.manual_seed(12345)  # disturb every RNG: resume must restore them
    second = make_trainer(tmp_path / "split", max_steps=4)
    second_history = second.train(resume=True)
    assert [m["step"] for m in second_history] == [3, 4]
    got = trainable(second.model)
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name
    # the update really moved the adapter away from its initial values
    assert any(not torch.equal(initial[n], expected[n]) for n in expected)
    # metrics of both halves line up with the uninterrupted run
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert lines[3]["reward_mean"] == pytest.approx(full_history[3]["reward_mean"])
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["step_000002", "step_000004"]


def test_no_partial_checkpoint_is_ever_picked(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step_000005").mkdir(parents=True)  # a complete-looking name without state.json
    (root / ".tmp_step_000009_1").mkdir()
    assert latest_checkpoint(tmp_path) is None
    trainer = make_trainer(tmp_path, max_steps=1)
    with pytest.raises(UserError, match="not a complete checkpoint"):
        trainer.resume(root / "step_000005")


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_rewriting_a_step_keeps_the_old_checkpoint_if_the_swap_fails(tmp_path, monkeypatch):
    import os

    from flowsteer.training.checkpoint import TrainerState, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first = save_checkpoint(tmp_path, TrainerState(step=3), model=model, optimizer=optimizer, keep_last=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.weight.add_(1.0)
    real_replace = os.replace

    def failing_replace(src, dst):  # the moment a kill used to lose the step: the new folder is not in yet
        if str(src).split(os.sep)[-1].startswith(".tmp_"):
            raise OSError("simulated failure moving the new checkpoint in")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, TrainerState(step=3), model=model, optimizer=optimizer, keep_last=1)
    monkeypatch.setattr(os, "replace", real_replace)
    assert latest_checkpoint(tmp_path) == first
    from safetensors.torch import load_file

    saved = load_file(str(first / "trainable.safetensors"))
    assert all(torch.equal(saved[n], v) for n, v in before.items())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000003"]
    save_checkpoint(tmp_path, TrainerState(step=3), model=model, optimizer=optimizer, keep_last=1)
    assert torch.equal(load_file(str(first / "trainable.safetensors"))["weight"], model.weight.detach())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000003"]


def test_resume_recovers_from_a_kill_mid_swap_and_clears_leftovers(tmp_path):
    import os
    import shutil

    trainer = make_trainer(tmp_path, max_steps=1)
    saved = trainer.save()
    root = saved.parent
    dead = _dead_pid()
    shutil.copytree(saved, root / f".tmp_step_000000_{dead}")  # the new copy, never renamed in
    saved.rename(root / f".old_step_000000_{dead}")  # the old copy, renamed aside: then SIGKILL
    (root / f".del_step_000000_{dead}").mkdir()  # an interrupted keep_last delete
    live = root / f".tmp_step_000001_{os.getppid()}"  # another live process is writing this one
    live.mkdir()
    assert latest_checkpoint(tmp_path) is None
    assert make_trainer(tmp_path, max_steps=1).resume() is True
    assert sorted(p.name for p in root.iterdir()) == [live.name, "step_000000"]
    assert latest_checkpoint(tmp_path) == saved


def test_resume_skips_a_torn_last_metrics_line(tmp_path, caplog):
    make_trainer(tmp_path, max_steps=1).train()
    metrics = tmp_path / "metrics.jsonl"
    with metrics.open("a", encoding="utf-8") as fh:
        fh.write('{"step": 2, "reward_me')  # killed mid-write: no closing brace, no newline
    trainer = make_trainer(tmp_path, max_steps=2)
    with caplog.at_level("WARNING", logger="flowsteer.training.trainer"):
        assert trainer.resume() is True
    assert trainer.step == 1
    assert "metrics.jsonl:2: skipping a torn" in caplog.text
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1]
    trainer.train(resume=False)
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2]


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(UserError, match=r"'lora.alpah'.*did you mean 'alpha'"):
        config_from_dict({"lora": {"alpah": 8}})
    with pytest.raises(UserError, match="loss.aggregation"):
        config_from_dict({"loss": {"aggregation": "mean"}})
    with pytest.raises(UserError, match="optim.lr"):
        config_from_dict({"optim": {"lr": "fast"}})
    with pytest.raises(UserError, match="group_size"):
        config_from_dict({"rollout": {"group_size": 1}})
    from flowsteer.training.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\nlora:\n  target_modules: [q_proj]\n")
    cfg = load_config(path, overrides={"max_steps": 3})
    assert cfg.optim.lr == 1e-4 and cfg.lora.target_modules == ("q_proj",) and cfg.max_steps == 3
    toml = tmp_path / "c.toml"
    toml.write_text("seed = 1\n[loss]\nbeta = 0.0\naggregation = 'seq-mean-token-mean'\n")
    assert load_config(toml).loss.aggregation == "seq-mean-token-mean"


def test_plot_and_export_director_from_a_run(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from flowsteer.cli import main
    from flowsteer.testing.tiny import save_tiny_model
    from flowsteer.training.policy import token_logprobs

    base_dir = save_tiny_model(tmp_path / "base", seed=3)
    trainer = make_trainer(tmp_path / "run", max_steps=1)
    object.__setattr__(trainer.config.model, "name_or_path", str(base_dir))  # what config.yaml records
    trainer.train()

    assert main(["plot", str(tmp_path / "run")]) == 0
    png = tmp_path / "run" / "training_curves.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"

    assert main(["export-director", str(tmp_path / "run"), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "vllm serve" in printed and "--enable-lora" in printed
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    attn = torch.ones_like(ids)
    trainer.model.eval()
    with torch.no_grad():
        expected = token_logprobs(trainer.model, ids, attn)
        got = token_logprobs(merged, ids, attn)
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_flowsteer_train_cli_end_to_end(tmp_path):
    """`flowsteer train --config` on a saved tiny model: datasets, LoRA, engine, director, canvas."""
    from flowsteer.cli import main
    from flowsteer.testing.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base", seed=0)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
max_steps: 2
model: {{name_or_path: "{base}", device: cpu}}
lora: {{r: 4, alpha: 8}}
rollout:
  tasks_per_step: 1
  group_size: 2
  max_turns: 2
  max_new_tokens: 40
  context_budget: 2560
  constrain: true
  constrain_options: {{set_prompt: false, node_actions: false, max_list: 2}}
  director_options: {{max_prompt_tokens: 8, repair_attempts: 0}}
data: {{datasets: [gsm_synthetic], limit: 4}}
logging: {{run_dir: "{tmp_path / 'run'}", save_every: 1, progress: false}}
""")
    assert main(["train", "--config", str(config), "--max-steps", "1"]) == 0
    assert main(["train", "--config", str(config), "--resume"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2]
    assert lines[0]["valid_action_rate"] == 1.0 and lines[0]["episodes"] == 2
    assert latest_checkpoint(tmp_path / "run").name == "step_000002"
