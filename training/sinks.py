"""Optional metric sinks besides ``metrics.jsonl``: TensorBoard and Weights & Biases, if installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .config import CWRPOConfig, config_to_dict

__all__ = ["open_sinks"]

logger = logging.getLogger(__name__)


class _TensorBoard:
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def __call__(self, metrics: dict[str, float]) -> None:
        step = int(metrics.get("step", 0))
        for key, value in metrics.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, config: CWRPOConfig, run_dir: Path) -> None:
        import wandb

        self.run = wandb.init(project=config.logging.wandb_project, dir=str(run_dir), config=config_to_dict(config))

    def __call__(self, metrics: dict[str, float]) -> None:
        self.run.log(dict(metrics), step=int(metrics.get("step", 0)))

    def close(self) -> None:
        self.run.finish()


def open_sinks(config: CWRPOConfig, run_dir: Path) -> list[Any]:
    """The sinks the config asks for; a missing package is a warning, not a failed run."""
    sinks: list[Any] = []
    if config.logging.tensorboard:
        try:
            sinks.append(_TensorBoard(run_dir / "tensorboard"))
        except ImportError:
            logger.warning("logging.tensorboard is on but tensorboard is not installed: pip install tensorboard")
    if config.logging.wandb:
        try:
            sinks.append(_WandB(config, run_dir))
        except ImportError:
            logger.warning("logging.wandb is on but wandb is not installed: pip install wandb")
    return sinks
