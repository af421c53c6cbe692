"""CWRPO training of the Flow-Director (``flowsteer.training``; needs the ``train`` extra).

>>> from flowsteer.training import CWRPOTrainer, load_config      # doctest: +SKIP
>>> trainer = CWRPOTrainer.from_config(load_config("training/configs/tiny-cpu.yaml"))  # doctest: +SKIP
>>> trainer.train()                                                # doctest: +SKIP

Pieces, each usable on its own: :mod:`.config` (one dataclass per concern), :mod:`.losses` (pure loss
functions and their registry), :mod:`.advantages`, :mod:`.batch` (tensors from sampled token ids),
:mod:`.policy` (LoRA model and log-probs), :mod:`.checkpoint`, :mod:`.distributed`, :mod:`.rollout`,
:mod:`.engines`, :mod:`.export` (curves: :mod:`flowsteer.report.plot`; the run folder: :mod:`flowsteer.runs`). Nothing in the core of ``flowsteer`` imports this package (a test checks), and
importing it does not import torch (the names below load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CWRPOConfig",
    "ModelConfig",
    "LoRAConfig",
    "RolloutConfig",
    "LossConfig",
    "OptimConfig",
    "DataConfig",
    "LoggingConfig",
    "load_config",
    "CWRPOTrainer",
    "Episode",
    "RolloutSource",
    "DirectorRollout",
    "group_advantages",
    "build_batch",
    "ConstraintReplay",
    "cwrpo_loss",
    "get_policy_loss",
    "register_policy_loss",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
]

_WHERE = {
    "CWRPOConfig": "config", "ModelConfig": "config", "LoRAConfig": "config", "RolloutConfig": "config",
    "LossConfig": "config", "OptimConfig": "config", "DataConfig": "config", "LoggingConfig": "config",
    "load_config": "config", "CWRPOTrainer": "trainer", "Episode": "rollout", "RolloutSource": "rollout",
    "DirectorRollout": "rollout", "group_advantages": "advantages", "build_batch": "batch", "ConstraintReplay": "constrained",
    "cwrpo_loss": "losses", "get_policy_loss": "losses", "register_policy_loss": "losses",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "latest_checkpoint": "checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
