"""Export a trained director: the LoRA adapter folder and a merged full model folder.

Both load with transformers (``AutoModelForCausalLM.from_pretrained``) and vLLM; the adapter can
also be served on top of the base model with vLLM's ``--enable-lora``.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsteer.director.shipped import quiet_peft
from flowsteer.errors import UserError

from .checkpoint import latest_checkpoint
from .config import load_config

__all__ = ["ExportResult", "export_director", "base_model_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how to serve it."""

    checkpoint: Path
    adapter_dir: Path | None
    merged_dir: Path
    base_model: str
    lora_rank: int | None

    @property
    def serve_commands(self) -> list[str]:
        """Shell commands that serve the exported director with vLLM (merged, then base + LoRA)."""
        merged = shlex.quote(str(self.merged_dir))
        commands = [f"vllm serve {merged} --served-model-name flowsteer-director"]
        if self.adapter_dir is not None:
            commands.append(
                f"vllm serve {shlex.quote(self.base_model)} --enable-lora --max-lora-rank {self.lora_rank} "
                f"--lora-modules flowsteer-director={shlex.quote(str(self.adapter_dir))}"
            )
        return commands


def base_model_path(name_or_path: str) -> str:
    """A folder or hub id transformers and vLLM can load (``embedded`` is resolved to its cache)."""
    if name_or_path == "embedded":
        from flowsteer.models.embedded import ensure_embedded_model_dir

        return str(ensure_embedded_model_dir())
    return name_or_path


def export_director(run_dir: str | Path, output: str | Path | None = None, *, checkpoint: str | Path | None = None,
                    merge: bool = True) -> ExportResult:
    """Write ``OUTPUT/adapter`` and ``OUTPUT/merged`` (default ``RUN_DIR/export``) from the newest
    checkpoint of the run (or ``checkpoint``)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"{config_file} not found: pass the folder a `flowsteer train` run wrote")
    config = load_config(config_file)
    ckpt = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"{run_dir} has no checkpoint yet: train for at least one step (logging.save_every)")
    out = Path(output) if output is not None else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    base = base_model_path(config.model.name_or_path)
    adapter_dir = None
    if (ckpt / "adapter").is_dir():
        adapter_dir = out / "adapter"
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        shutil.copytree(ckpt / "adapter", adapter_dir)
        _point_adapter_at(adapter_dir, base)
    merged_dir = out / "merged"
    if merge:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        if adapter_dir is not None:
            from peft import PeftModel

            with quiet_peft():
                model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        else:  # full fine-tuning: the checkpoint holds every trained weight by name
            state = load_file(str(ckpt / "trainable.safetensors"))
            missing = model.load_state_dict(state, strict=False)
            logger.info("merged %d tensors (%d untouched)", len(state), len(missing.missing_keys))
        model.save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
    return ExportResult(checkpoint=ckpt, adapter_dir=adapter_dir, merged_dir=merged_dir, base_model=base,
                        lora_rank=config.lora.r if adapter_dir is not None else None)


def _point_adapter_at(adapter_dir: Path, base: str) -> None:
    """Record the loadable base path in ``adapter_config.json`` (the run may have used ``embedded``)."""
    import json

    cfg_file = adapter_dir / "adapter_config.json"
    if cfg_file.is_file():
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base
        cfg_file.write_text(json.dumps(data, indent=2), encoding="utf-8")
