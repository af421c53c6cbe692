"""Crash and resume: SIGKILL a training run mid-step and mid-checkpoint-write, then ``--resume``.

The trainer runs in a subprocess (the tiny random model and the toy rollout, bit-for-bit
reproducible on CPU). The child script can pause at an exact point -- after a step's PPO update, or
halfway through writing a checkpoint file (half the bytes on disk) -- and write a marker; the parent
then kills it with SIGKILL from outside. The previous checkpoint must stay valid and loadable, and the
resumed run must end with exactly the adapter of an uninterrupted run. Kill-and-resume of an
evaluation is tested in ``tests/test_eval_harness.py::test_sigkilled_run_resumes_without_rerunning_finished_items``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
from safetensors.torch import load_file  # noqa: E402

from flowsteer.training.checkpoint import latest_checkpoint  # noqa: E402

pytestmark = pytest.mark.timeout(600)

MAX_STEPS = 6

_SCRIPT = textwrap.dedent("""
    import io, os, sys, time
    from pathlib import Path

    import torch

    import flowsteer.training.trainer as trainer_module
    from flowsteer.tasks import Task
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer
    from flowsteer.training.checkpoint import latest_checkpoint
    from flowsteer.training.config import config_from_dict
    from flowsteer.training.policy import prepare_policy
    from flowsteer.training.toy import ToyRollout
    from flowsteer.training.trainer import CWRPOTrainer, seed_everything

    run_dir, resume, pause = Path(sys.argv[1]), sys.argv[2] == "resume", sys.argv[3]
    marker = run_dir.parent / (run_dir.name + ".paused")

    def hold(what):
        marker.write_text(what)
        time.sleep(600)  # the parent SIGKILLs us here

    if pause.startswith("update:"):  # pause mid-step: weights updated in memory, step not logged or saved
        at = int(pause.split(":")[1])
        real_update = trainer_module.ppo_update
        def ppo_update(*args, step, **kwargs):
            out = real_update(*args, step=step, **kwargs)
            if step + 1 == at:
                hold(f"update {at}")
            return out
        trainer_module.ppo_update = ppo_update
    elif pause.startswith("save:"):  # pause mid-checkpoint-write: half of optimizer.pt on disk
        at = int(pause.split(":")[1])
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            path = Path(f) if isinstance(f, (str, os.PathLike)) else None
            if path is not None and path.name == "optimizer.pt" and f"step_{at:06d}" in path.parent.name:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                with open(path, "wb") as handle:
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    os.fsync(handle.fileno())
                hold(f"save {at} {path}")
            return real_save(obj, f, *args, **kwargs)
        torch.save = save

    config = config_from_dict({
        "seed": 7,
        "max_steps": %(max_steps)d,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "rollout": {"tasks_per_step": 2, "group_size": 3}, "director": {"temperature": 1.0},
        "loss": {"beta": 0.05, "ppo_epochs": 2, "num_minibatches": 2},
        "optim": {"lr": 5e-3, "warmup_steps": 2, "micro_batch_size": 2},
        "data": {"datasets": ["toy"]},
        "logging": {"run_dir": str(run_dir), "save_every": 2, "keep_last": 2, "progress": False},
    })
    seed_everything(config.seed)
    tok = build_tiny_tokenizer()
    model = prepare_policy(build_tiny_model(tok, seed=3), config.model, config.lora)
    rollout = ToyRollout(model, tok, range(100, 180), seed=config.seed, max_new_tokens=4)
    tasks = [Task(f"Say something about {n}.", id=f"t{n}") for n in range(5)]
    trainer = CWRPOTrainer(config, model=model, tokenizer=tok, rollout=rollout, tasks=tasks)
    if resume and latest_checkpoint(run_dir) is not None:
        torch.manual_seed(999)  # other RNG state than a fresh start: resume must restore it
    (run_dir.parent / (run_dir.name + ".started")).write_text("training")
    trainer.train(resume=resume)
    print("finished at step", trainer.step)
""") % {"max_steps": MAX_STEPS}


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}


def _start(script: Path, run_dir: Path, *, resume: bool, pause: str = "none") -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(script), str(run_dir), "resume" if resume else "fresh", pause],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert f"finished at step {MAX_STEPS}" in out.decode()


def _kill_when_paused(proc: subprocess.Popen[bytes], run_dir: Path) -> str:
    marker = run_dir.parent / (run_dir.name + ".paused")
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError("child exited before its pause point: " + proc.stderr.read().decode()[-3000:])
        assert time.monotonic() < deadline, "child never reached its pause point"
        time.sleep(0.05)
    what = marker.read_text()
    marker.unlink()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return what


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    final = latest_checkpoint(run_dir)
    assert final is not None and final.name == f"step_{MAX_STEPS:06d}"
    return load_file(str(final / "trainable.safetensors"))


def _peft_adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / "adapter" / "adapter_model.safetensors"))


def _assert_valid_checkpoint(run_dir: Path, step: int) -> None:
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == f"step_{step:06d}"
    assert json.loads((ckpt / "state.json").read_text())["step"] == step
    load_file(str(ckpt / "trainable.safetensors"))  # every file of it loads
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        torch.load(ckpt / name, weights_only=False)


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys() and got
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


def _steps(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """The script, an uninterrupted run of it, and that run's training seconds (after start-up)."""
    root = tmp_path_factory.mktemp("crash")
    script = root / "train_child.py"
    script.write_text(_SCRIPT)
    proc = _start(script, root / "full", resume=False)
    while not (root / "full.started").exists() and proc.poll() is None:
        time.sleep(0.02)
    began = time.monotonic()
    _finish(proc)
    return script, root / "full", time.monotonic() - began


@pytest.mark.slow  # four training subprocesses: ~35 s on an idle 2-core machine
def test_sigkill_mid_step_then_mid_checkpoint_write_resumes_to_the_same_adapter(reference, tmp_path):
    script, full, _seconds = reference
    run = tmp_path / "run"

    # 1. killed during step 3, after its update changed the weights in memory
    what = _kill_when_paused(_start(script, run, resume=False, pause="update:3"), run)
    assert what == "update 3"
    _assert_valid_checkpoint(run, 2)
    assert [m["step"] for m in _steps(run)] == [1, 2]

    # 2. resumed, then killed halfway through writing the step-4 checkpoint
    what = _kill_when_paused(_start(script, run, resume=True, pause="save:4"), run)
    assert what.startswith("save 4")
    partial = [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp_step_000004")]
    assert partial and (partial[0] / "optimizer.pt").stat().st_size > 0  # the torn write is on disk...
    _assert_valid_checkpoint(run, 2)  # ...and the previous checkpoint is still the newest valid one
    assert not (run / "checkpoints" / "step_000004").exists()

    # 3. resumed to the end: the same adapter as the uninterrupted run, bit for bit
    _finish(_start(script, run, resume=True))
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # leftovers cleared
    _assert_same(_adapter(run), _adapter(full))
    _assert_same(_peft_adapter(run), _peft_adapter(full))
    got, expected = _steps(run), _steps(full)
    assert [m["step"] for m in got] == list(range(1, MAX_STEPS + 1))
    def untimed(m: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in m.items() if not k.startswith("time")}

    assert [untimed(m) for m in got] == [untimed(m) for m in expected]  # rewards, losses, KL: identical


@pytest.mark.slow
def test_sigkill_at_random_times_then_resume_gives_the_same_adapter(reference, tmp_path):
    """Kills from outside at random moments of training (rollouts, updates, checkpoint writes)."""
    script, full, seconds = reference
    run = tmp_path / "run"
    started = tmp_path / "run.started"
    # kill within the first ~40% of what is left, so several kills land however fast the machine is
    window = max(0.2, min(2.5, 0.4 * seconds))
    rng = random.Random(2024)
    progress: list[str] = []
    finished = False
    for _ in range(12):
        started.unlink(missing_ok=True)
        proc = _start(script, run, resume=True)  # resume without a checkpoint starts from scratch
        while not started.exists() and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is not None:  # it finished before the kill came
            _finish(proc)
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ckpt = latest_checkpoint(run)
        progress.append(ckpt.name if ckpt is not None else "none")
        if ckpt is not None:
            _assert_valid_checkpoint(run, int(ckpt.name.split("_")[1]))
            if ckpt.name == f"step_{MAX_STEPS:06d}":
                break  # every step is done: nothing left to interrupt
    if not finished:
        _finish(_start(script, run, resume=True))
    print(f"{len(progress)} kills; newest checkpoint after each: {progress}")
    assert len(progress) >= 2
    _assert_same(_adapter(run), _adapter(full))


_CLI_WRAPPER = textwrap.dedent("""
    import io, os, sys, time
    from pathlib import Path

    import torch

    pause_step, marker = int(sys.argv[1]), Path(sys.argv[2])
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # half of optimizer.pt on disk, then wait for the SIGKILL
        path = Path(f) if isinstance(f, (str, os.PathLike)) else None
        if path is not None and path.name == "optimizer.pt" and f"step_{pause_step:06d}" in path.parent.name:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            marker.write_text(str(path))
            time.sleep(600)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
    from flowsteer.cli import main

    sys.exit(main(sys.argv[3:]))
""")


@pytest.mark.slow
def test_flowsteer_train_cli_killed_mid_checkpoint_resumes(tmp_path):
    """The real ``flowsteer train`` path (tiny model, director, canvas, simulated executor): SIGKILLed
    while writing the step-2 checkpoint, ``--resume`` continues from step 1 and finishes."""
    from flowsteer.testing.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base", seed=0)
    wrapper = tmp_path / "cli.py"
    wrapper.write_text(_CLI_WRAPPER)

    def config(run_dir: Path) -> Path:
        path = tmp_path / f"{run_dir.name}.yaml"
        path.write_text(f"""
seed: 5
max_steps: 3
model: {{name_or_path: "{base}", device: cpu}}
lora: {{r: 4, alpha: 8, dropout: 0.0}}
rollout:
  tasks_per_step: 1
  group_size: 2
  max_turns: 2
  max_new_tokens: 40
  context_budget: 2560
  concurrency: 1
  constrain: true
  constrain_options: {{set_prompt: false, node_actions: false, max_list: 2}}
  director_options: {{max_prompt_tokens: 8, repair_attempts: 0}}
data: {{datasets: [gsm_synthetic], limit: 4}}
logging: {{run_dir: "{run_dir}", save_every: 1, keep_last: 3, progress: false}}
""")
        return path

    def cli(run_dir: Path, *extra: str, pause: int = 0) -> subprocess.Popen[bytes]:
        marker = tmp_path / "paused"
        return subprocess.Popen([sys.executable, str(wrapper), str(pause), str(marker), "train", "--config",
                                 str(config(run_dir)), *extra], env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    full, run = tmp_path / "full", tmp_path / "run"
    done = cli(full)
    _, err = done.communicate(timeout=500)
    assert done.returncode == 0, err.decode()[-3000:]

    proc = cli(run, pause=2)
    marker = tmp_path / "paused"
    deadline = time.monotonic() + 500
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _assert_valid_checkpoint(run, 1)
    assert any(p.name.startswith(".tmp_step_000002") for p in (run / "checkpoints").iterdir())

    resumed = cli(run, "--resume")
    _, err = resumed.communicate(timeout=500)
    assert resumed.returncode == 0, err.decode()[-3000:]
    assert [m["step"] for m in _steps(run)] == [1, 2, 3]
    assert latest_checkpoint(run).name == "step_000003"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # the torn write is gone
    got = load_file(str(latest_checkpoint(run) / "trainable.safetensors"))
    expected = load_file(str(latest_checkpoint(full) / "trainable.safetensors"))
    _assert_same(got, expected)
