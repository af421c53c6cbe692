"""The trained director that ships with the package: a LoRA adapter for the embedded SmolLM2-135M.

The adapter lives in ``flowsteer/director/adapters/embedded/`` (package data: ``adapter_config.json``,
``adapter_model.safetensors``, ``manifest.json``, ``MODEL_CARD.md``). ``load_chat_model("embedded")``
attaches it under the name :data:`SHIPPED_ADAPTER`; a :class:`~flowsteer.director.Director` given
that model switches it on (``LocalChatModel.as_director``) while operators and baselines keep the
base weights, so the executor is the same model the director was trained against.

An adapter is only valid for the prompts and action grammar it was trained on:
:func:`director_fingerprint` hashes them (system prompts, turn templates, the worked example, the
small-model preset and its grammar) and ``manifest.json`` records the value at training time. A
test compares the two, so a prompt or grammar change fails until the adapter is retrained (or the
version is bumped on purpose).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from flowsteer.errors import UserError

__all__ = ["SHIPPED_ADAPTER", "shipped_adapter_dir", "shipped_manifest", "check_shipped_adapter",
           "director_fingerprint", "attach_shipped_adapter", "RESTORE_HINT"]

logger = logging.getLogger(__name__)

SHIPPED_ADAPTER = "flowsteer-director"
"""Adapter name of the shipped director on the embedded model."""

RESTORE_HINT = ("restore it with `git checkout -- flowsteer/director/adapters/embedded` (or reinstall "
                "flowsteer), retrain it with `make train-director`, or run the base model with "
                "`--director untrained` / `load_chat_model('embedded', trained_director=False)`")

_FILES = ("adapter_config.json", "adapter_model.safetensors", "manifest.json")


def shipped_adapter_dir() -> Path:
    """The folder of the shipped adapter (inside the installed package)."""
    return Path(str(resources.files("flowsteer.director") / "adapters" / "embedded"))


def check_shipped_adapter(folder: Path | None = None) -> Path:
    """``folder`` (default: the shipped one) after checking that every file is there and readable;
    a :class:`UserError` saying how to restore it otherwise."""
    folder = folder or shipped_adapter_dir()
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(f"the trained director adapter is missing {', '.join(missing)} in {folder}: {RESTORE_HINT}")
    try:
        json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        from safetensors import safe_open

        with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as fh:
            if not list(fh.keys()):
                raise ValueError("no tensors")
    except Exception as exc:  # noqa: BLE001 - JSON, OS and safetensors' own (unexported) error types
        raise UserError(f"the trained director adapter in {folder} is corrupt ({exc}): {RESTORE_HINT}") from exc
    return folder


def shipped_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The manifest of the shipped adapter (fingerprint, base model, training run)."""
    folder = check_shipped_adapter(folder)
    return dict(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))


def director_fingerprint(config: Any = None, registry: Any = None) -> str:
    """A hash of everything an adapter's behaviour depends on besides its weights: the system prompt
    of every task kind, the turn and example templates, the prompt-relevant director settings and
    the action grammar of the empty canvas, a one-operator canvas and one that ends in ``Format`` (its
    repeat rule) for each task kind (``config``: default
    ``DirectorConfig.small_model(constrained=True)``, the embedded director's settings)."""
    from flowsteer.director import DirectorConfig
    from flowsteer.director.prompts import load_template, system_prompt
    from flowsteer.operators.registry import default_registry
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.ir import Workflow

    config = config or DirectorConfig.small_model(constrained=True)
    registry = registry or default_registry()
    parts: list[str] = []
    for kind in ("math", "code", "qa"):
        parts.append(system_prompt(registry, kind, template=config.system_prompt_file, hints=config.task_hints,
                                   usage_hints=config.usage_hints, write_prompts=config.write_prompts))
    parts += [load_template(name) for name in ("turn.txt", "example_task.txt", "repair.txt")]
    fields = ("max_turns", "context_budget", "max_action_tokens", "max_prompt_tokens", "feedback_chars",
              "history_turns", "example_turn", "task_hints", "usage_hints", "write_prompts")
    parts.append(json.dumps({f: getattr(config, f) for f in fields}, sort_keys=True))
    constraint = config.constraint
    if constraint is not None and hasattr(constraint, "options"):
        from flowsteer.constrain.grammar import action_grammar

        parts.append(json.dumps(dataclasses.asdict(constraint.options), sort_keys=True, default=str))
        # per task kind: the grammar withholds operators with nothing to do on it (Test off math)
        for kind in ("math", "code", "qa"):
            for workflow in (Workflow(), parse("Programmer", registry), parse("Programmer -> Format", registry)):
                parts.append(action_grammar(registry, workflow, constraint.options, finish_allowed=False,
                                            kind=kind).to_json())
    return hashlib.sha256("\n\x00".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Around a peft wrap: peft reads transformers' deprecated ``is_gradient_checkpointing`` alias,
    a FutureWarning about peft's code, not the user's, so it is hidden where we call peft."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def attach_shipped_adapter(model: Any, folder: Path | None = None) -> Any:
    """``model`` (the embedded base) as a peft model carrying the shipped adapter, switched off
    until a call asks for it by name."""
    folder = check_shipped_adapter(folder)
    try:
        from peft import PeftModel
    except ImportError:
        from flowsteer.errors import MissingExtraError

        raise MissingExtraError("peft", "local", "The trained embedded director") from None
    manifest = shipped_manifest(folder)
    current = director_fingerprint()
    if manifest.get("fingerprint") != current:
        logger.warning("the shipped director adapter was trained on prompts/grammar %s, these are %s "
                       "(custom operators or edited prompts): it may act worse than its model card says",
                       manifest.get("fingerprint"), current)
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=SHIPPED_ADAPTER, is_trainable=False)
    peft_model.eval()
    return peft_model
