"""Retraining the director on custom operators: the config names a module that registers them, and
the director's grammar, the canvas and the reward use them with no other change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.slow
def test_training_uses_operators_registered_by_the_config_module(tmp_path):
    from flowsteer.testing.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base", seed=0)
    config = tmp_path / "custom.yaml"
    config.write_text(f"""
seed: 3
max_steps: 1
model: {{name_or_path: "{base}", device: cpu}}
lora: {{r: 4, alpha: 8}}
rollout:
  tasks_per_step: 2
  group_size: 4
  temperature: 1.0
  max_turns: 6
  max_new_tokens: 40
  context_budget: 2560
  constrain: true
  constrain_options: {{set_prompt: false, node_actions: false, max_list: 2, prompt_tokens: 6}}
  director_options: {{max_prompt_tokens: 8, repair_attempts: 0}}
data: {{datasets: [gsm_synthetic], limit: 4, custom_operators: [custom_ops_for_training]}}
logging: {{run_dir: "{tmp_path / 'run'}", save_every: 1, progress: false}}
""")
    log = tmp_path / "ops.log"
    env = {**os.environ, "FLOWSTEER_CUSTOM_OPS_LOG": str(log), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "flowsteer", "train", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["episodes"] == 8 and metrics[0]["valid_action_rate"] == 1.0
    used = set(log.read_text().split()) if log.exists() else set()
    assert used & {"Estimate", "Recount", "Tally"}, "the director never placed a custom operator"
