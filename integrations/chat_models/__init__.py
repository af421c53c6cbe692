"""Chat-model backends: a local transformers chat model and the embedded default model.

Importing this package does not import torch; the heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalChatModel", "load_embedded_model", "ensure_embedded_model_dir"]


def __getattr__(name: str) -> Any:
    if name == "LocalChatModel":
        from flowsteer.integrations.chat_models.local import LocalChatModel

        return LocalChatModel
    if name in ("load_embedded_model", "ensure_embedded_model_dir"):
        from flowsteer.integrations.chat_models import embedded

        return getattr(embedded, name)
    raise AttributeError(name)
