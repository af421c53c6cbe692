"""The training run folder, the one definition of its layout.

.. code-block:: text

    <run_dir>/
      config.yaml            the resolved training config
      metrics.jsonl          one JSON record per step ("step", "reward_mean", "kl", ...)
      episodes.jsonl         one JSON record per rollout episode
      checkpoints/step_NNNNNN/   complete checkpoints (state.json written last)
      warmstart/             the warm start's stages

The trainer (:mod:`flowsteer.training`) writes it; the report, the plots and the CLI read it
through this module, so none of them needs the training package (or torch) to read a run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError

__all__ = ["checkpoint_dir", "checkpoints", "latest_checkpoint", "read_metrics", "STEP_DIR"]

STEP_DIR = re.compile(r"^step_(\d+)$")
"""Name of a checkpoint folder under ``<run_dir>/checkpoints``."""


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders of a run in step order (complete or not: see :func:`latest_checkpoint`)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    found = [p for p in checkpoints(run_dir) if (p / "state.json").is_file()]
    return found[-1] if found else None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-step records of a run, in step order (a later line for the same step wins)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{path} does not exist: pass the run folder a training run wrote (logging.run_dir)")
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[int(record.get("step", len(by_step) + 1))] = record
    return [by_step[s] for s in sorted(by_step)]
