"""TensorBoard and Weights & Biases sinks (W&B in offline mode: nothing leaves the machine)."""

from __future__ import annotations

import pytest

from flowsteer.training.config import config_from_dict
from flowsteer.training.sinks import open_sinks


def _config(**logging):
    return config_from_dict({"model": {"name_or_path": "tiny"}, "logging": logging})


def test_tensorboard_sink_writes_integer_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (sink,) = open_sinks(_config(tensorboard=True), tmp_path)
    for step, reward in ((1, -0.5), (2, 0.25)):
        sink({"step": step, "reward": reward, "note": "text is skipped"})
    sink.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "train/reward" in events.Tags()["scalars"] and "train/note" not in events.Tags()["scalars"]
    assert [(e.step, e.value) for e in events.Scalars("train/reward")] == [(1, -0.5), (2, 0.25)]


def test_wandb_sink_logs_offline_into_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    (sink,) = open_sinks(_config(wandb=True, wandb_project="flowsteer-test"), tmp_path)
    sink({"step": 1, "reward": 0.5})
    sink({"step": 2, "reward": 0.75})
    summary = dict(sink.run.summary)
    sink.close()
    assert "reward" in summary  # (the summary is updated asynchronously)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_a_sink_whose_package_is_missing_is_a_warning(tmp_path, monkeypatch, caplog):
    import builtins

    real = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    assert open_sinks(_config(wandb=True), tmp_path) == []
    assert "pip install wandb" in caplog.text


def test_train_help_says_where_metrics_go():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "flowsteer", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for words in ("logging.tensorboard=true", "logging.wandb=true", "WANDB_MODE=offline", "'flowsteer[logging]'"):
        assert words in " ".join(out.split()), words


def test_plots_have_integer_step_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import json

    import matplotlib.pyplot as plt

    from flowsteer.report.plot import plot_run

    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward": 0.1 * s, "kl": 0.01 * s}) + "\n" for s in (1, 2, 3)))
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig) or real_close(fig))
    assert plot_run(tmp_path).is_file()
    (fig,) = figures
    for ax in fig.axes:
        if ax.get_lines():
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_progress_line_says_where_each_step_went_and_the_run_so_far():
    from flowsteer.cli.train import step_info

    times: list[float] = []
    step_info({"step": 1, "time_step": 230.0, "time_rollout": 200.0, "time_update": 30.0}, times)
    line = step_info({"step": 2, "time_step": 10.0, "time_rollout": 6.0, "time_update": 4.0, "reward_mean": 0.5}, times)
    assert "R 0.500" in line and "step 10s (rollout 6s + update 4s; mean 120s, total 240s)" in line
