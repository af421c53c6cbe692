"""The warm start (search -> grammar-exact demonstrations -> supervised update) and CWRPO after it,
end to end on a tiny random director with the simulated executor."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

GOOD = "Programmer -> Verify ? Revise : done -> Verify ? Revise : done -> Format"
SHORT = "Programmer -> Format"


def _config(tmp_path, base, **warm):
    from flowsteer.training.config import config_from_dict

    return config_from_dict({
        "seed": 3, "max_steps": 1,
        "model": {"name_or_path": str(base), "device": "cpu"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "rollout": {"tasks_per_step": 1, "group_size": 2, "executor_options": {"skill": 1.0}},
        "director": {"preset": "small_model", "temperature": 1.0, "max_turns": 8, "max_action_tokens": 64,
                     "context_budget": 2048, "constrain": True},
        "optim": {"lr": 1e-4, "warmup_steps": 0, "micro_batch_size": 2},
        "data": {"datasets": ["arithmetic", "number_lists"], "limit": 4, "split": "train"},
        "warmstart": {"enabled": True, "candidates": {"math": [GOOD, SHORT]}, "search_tasks": 2,
                      "demo_tasks": 2, "epochs": 4, "lr": 5e-3, "micro_batch_size": 2, **warm},
        "logging": {"run_dir": str(tmp_path / "run"), "save_every": 1, "progress": False},
    })


def test_workflow_actions_rebuild_the_workflow():
    import flowsteer as fs
    from flowsteer.canvas import Canvas, render_action
    from flowsteer.testing import SimulatedExecutor
    from flowsteer.training.warmstart import workflow_actions

    for dsl in (GOOD, "[Programmer, Custom] -> ScEnsemble -> (Review -> Revise) * 2 -> Format"):
        wf = fs.parse(dsl)
        canvas = Canvas(SimulatedExecutor({}), config=fs.canvas.CanvasConfig(write_prompts=False))
        canvas.reset(fs.Task("What is 2 + 3?", answer="5"))
        for action in workflow_actions(wf)[:-1]:
            _, _, info = canvas.step(render_action(action))
            assert info.accepted, info.message
        assert canvas.workflow.dsl == wf.dsl


def test_warm_start_teaches_the_best_workflow_then_cwrpo_runs(tmp_path):
    from flowsteer.testing.tiny import save_tiny_model
    from flowsteer.training import CWRPOTrainer

    base = save_tiny_model(tmp_path / "base", seed=0)
    trainer = CWRPOTrainer.from_config(_config(tmp_path, base))
    history = trainer.train()
    folder = tmp_path / "run" / "warmstart"
    search = json.loads((folder / "search.json").read_text())
    # the short workflow cannot release the answer term, so the search never picks it
    assert search["best"] == {"arithmetic": GOOD, "number_lists": GOOD}
    demos = [json.loads(x) for x in (folder / "demos.jsonl").read_text().splitlines()]
    assert len(demos) == 4 and all(d["dsl"] == GOOD for d in demos)
    # one constrained call per action: four adds and finish, each with its grammar record
    assert all(len(d["turns"]) == 5 and all(t["constraint"] for t in d["turns"]) for d in demos)
    losses = json.loads((folder / "done.json").read_text())["losses"]
    assert losses[-1] < losses[0], losses
    assert len(history) == 1 and history[0]["episodes"] == 2
    episodes = [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 2 and {"actions", "workflow", "r_div", "answer"} <= set(episodes[0])


def test_a_resumed_run_reuses_the_warm_start(tmp_path):
    from flowsteer.testing.tiny import save_tiny_model
    from flowsteer.training import CWRPOTrainer
    from flowsteer.training.checkpoint import save_trainable

    base = save_tiny_model(tmp_path / "base", seed=0)
    first = CWRPOTrainer.from_config(_config(tmp_path, base))
    first.warm_start()
    folder = tmp_path / "run" / "warmstart"
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    save_trainable(first.model, tmp_path / "after.safetensors")
    second = CWRPOTrainer.from_config(_config(tmp_path, base))
    second.warm_start()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # nothing redone
    trained = dict(first.model.named_parameters())
    for name, param in second.model.named_parameters():
        if param.requires_grad:
            assert param.detach().equal(trained[name].detach()), name
