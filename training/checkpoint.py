"""Atomic checkpoints that resume a run exactly.

A checkpoint folder ``RUN_DIR/checkpoints/step_000010/`` holds:

* ``trainable.safetensors`` -- every trainable parameter by name (the LoRA weights), used to resume;
* ``adapter/`` -- the same adapter as a peft folder (for export and serving), when the model has one;
* ``optimizer.pt``, ``scheduler.pt`` -- their state dicts;
* ``rng.pt`` -- python, numpy and torch (CPU and CUDA) generator states;
* ``state.json`` -- the step, the data cursor and anything else the trainer keeps.

It is written to a hidden temporary folder first and renamed into place, so a crash mid-write never
leaves a checkpoint that looks complete; :func:`latest_checkpoint` only sees renamed folders. A step
that is written again keeps its old folder (renamed aside) until the new one is in place, and
:func:`recover_checkpoints` tidies what a killed writer left behind.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError
from flowsteer.runs import checkpoint_dir, latest_checkpoint
from flowsteer.runs import checkpoints as _checkpoints

__all__ = ["TrainerState", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoint_dir",
           "recover_checkpoints"]

logger = logging.getLogger(__name__)
_LEFTOVER_RE = re.compile(r"^\.(tmp|old|del)_(step_\d+)_(\d+)$")


@dataclass(frozen=True)
class TrainerState:
    """What the trainer needs besides weights and optimizer to continue."""

    step: int
    """Completed training steps."""
    data_state: Mapping[str, Any] = field(default_factory=dict)
    """The task sampler's cursor."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form trainer bookkeeping (e.g. optimizer updates done)."""



def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | Path,
    state: TrainerState,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any = None,
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint atomically and return its folder; keeps the newest ``keep_last``."""
    import torch

    final = checkpoint_dir(run_dir, state.step)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp_{final.name}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_trainable(model, tmp / "trainable.safetensors")
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(tmp / "adapter"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        payload = {"step": state.step, "data_state": dict(state.data_state), "extra": dict(state.extra)}
        (tmp / "state.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        _swap_in(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("checkpoint written: %s", final)
    if keep_last:
        for old in _checkpoints(run_dir)[:-keep_last]:
            _remove(old, "del")
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is renamed aside first and deleted only after.

    At every moment one complete checkpoint of the step exists on disk: ``final`` itself, or its aside
    copy (``.old_step_N_PID``) that :func:`recover_checkpoints` renames back after a kill.
    """
    if not final.exists():
        os.replace(tmp, final)
        return
    aside = final.parent / f".old_{final.name}_{os.getpid()}"
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(final, aside)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _remove(path: Path, tag: str) -> None:
    """Delete a checkpoint folder: renamed out of sight first, so a kill mid-delete never leaves a
    half-deleted folder that still looks like a checkpoint."""
    doomed = path.parent / f".{tag}_{path.name}_{os.getpid()}"
    try:
        os.replace(path, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing a checkpoint while it recovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_checkpoints(run_dir: str | Path) -> list[Path]:
    """Tidy ``RUN_DIR/checkpoints`` after a crash; return the leftover folders it removed.

    Leftovers of dead writers only (the writer's pid is in the name; a live process's are left alone):
    ``.tmp_step_N_PID`` (a torn write) and ``.del_step_N_PID`` (an interrupted delete) are removed;
    ``.old_step_N_PID`` (a checkpoint renamed aside while its step was rewritten) is renamed back to
    ``step_N`` when that folder is missing, else removed.
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        match = _LEFTOVER_RE.match(path.name)
        if match is None or not path.is_dir() or _pid_alive(int(match.group(3))):
            continue
        final = root / match.group(2)
        if match.group(1) == "old" and not final.exists() and (path / "state.json").is_file():
            os.replace(path, final)
            logger.warning("restored checkpoint %s from %s (a rewrite of it was interrupted)", final, path.name)
            continue
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed leftover checkpoint folder %s", path)
        removed.append(path)
    return removed


def save_trainable(model: Any, file: str | Path) -> None:
    """The trainable parameters (the LoRA weights) of ``model`` to one safetensors file."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().to("cpu").clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(file))


def load_trainable(model: Any, file: str | Path) -> None:
    """Copy the tensors :func:`save_trainable` wrote into ``model``'s trainable parameters."""
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(file))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    unknown = [n for n in tensors if n not in params]
    if missing or unknown:
        raise UserError(
            f"{file} does not fit this model (missing {missing[:3]}, unexpected {unknown[:3]}): "
            "resume with the same model and LoRA settings the run started with"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def load_checkpoint(path: str | Path, *, model: Any, optimizer: Any = None, scheduler: Any = None,
                    restore_rng: bool = True) -> TrainerState:
    """Load weights, optimizer, scheduler and RNG states from ``path``; return the trainer state."""
    import torch

    path = Path(path)
    if not (path / "state.json").is_file():
        raise UserError(f"{path} is not a complete checkpoint (no state.json): pick another step folder")
    load_trainable(model, path / "trainable.safetensors")
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    if restore_rng:
        _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    payload = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return TrainerState(step=int(payload["step"]), data_state=payload.get("data_state", {}),
                        extra=payload.get("extra", {}))
