"""What a caller needs to know about a chat model to call it: the model behind its wrappers and
the keyword arguments its family takes for token limits and sampling.

Kept apart from :mod:`.specs` (which loads models and attaches the shipped director adapter), so the
director can use these without importing the loading code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["unwrap_model", "generation_kwargs", "constraint_engine", "ConstraintEngine"]

ConstraintEngine = Literal["logits_processor", "structured_outputs"]


def constraint_engine(model: Any) -> ConstraintEngine | None:
    """How ``model`` (wrappers looked through) takes an action grammar, as the model declares it.

    A chat model declares ``constraint_engine = "logits_processor"`` (it samples locally and takes a
    ``logits_processor_factory`` call kwarg: :class:`~flowsteer.models.local.LocalChatModel`) or
    ``"structured_outputs"`` (an OpenAI-compatible client of a server that takes the grammar as
    ``extra_body.structured_outputs``, such as vLLM). ``langchain_openai`` clients declare nothing, so
    they are recognised by class. ``None``: the model cannot be constrained.
    """
    inner = unwrap_model(model)
    declared = getattr(type(inner), "constraint_engine", None)
    if declared in ("logits_processor", "structured_outputs"):
        return declared  # type: ignore[no-any-return]
    try:
        from langchain_openai.chat_models.base import BaseChatOpenAI
    except ImportError:
        return None
    return "structured_outputs" if isinstance(inner, BaseChatOpenAI) else None


def unwrap_model(model: Any) -> Any:
    """The model that really answers: ``model`` with its wrappers peeled off.

    A wrapper is a chat model holding the wrapped one in a chat-model field named ``inner``
    (:func:`flowsteer.models.retry.with_retries`, the fault injector, the eval call cache); it passes call
    kwargs through, so generation settings, the tokenizer and the constraint engine are the inner
    model's.
    """
    from langchain_core.language_models import BaseChatModel

    seen = 0
    while isinstance(getattr(model, "inner", None), BaseChatModel) and seen < 16:
        model, seen = model.inner, seen + 1
    return model


def generation_kwargs(model: BaseChatModel, *, max_tokens: int | None = None,
                      temperature: float | None = None, top_p: float | None = None) -> dict[str, Any]:
    """Per-call keyword arguments setting token limit and sampling for ``model``'s family.

    LocalChatModel takes ``max_new_tokens``; OpenAI-style models take ``max_tokens``; other chat
    models (fakes, user classes) get nothing they might reject. Wrappers (:func:`unwrap_model`) are
    looked through: they pass the kwargs on to the model they wrap.
    """
    fields = getattr(type(unwrap_model(model)), "model_fields", {})
    out: dict[str, Any] = {}
    if max_tokens is not None:
        if "max_new_tokens" in fields:
            out["max_new_tokens"] = max_tokens
        elif "max_tokens" in fields:
            out["max_tokens"] = max_tokens
    if temperature is not None and "temperature" in fields:
        out["temperature"] = temperature
    if top_p is not None and "top_p" in fields:
        out["top_p"] = top_p
    return out
