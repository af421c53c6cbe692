"""The trained policy: a causal LM with a LoRA adapter, and the log-probs the loss needs.

The reference policy of the KL term is the same network with the adapter switched off
(``disable_adapter()``), so no second copy of the base model is kept in memory. Log-probs are taken
at the rollout temperature (the policy that sampled is the temperature-scaled model).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from flowsteer.errors import MissingExtraError, UserError

from .config import LoRAConfig, ModelConfig

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .constrained import ConstraintReplay, Segment

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "load_policy",
    "wrap_lora",
    "autocast",
    "token_logprobs",
    "reference_logprobs",
    "has_adapter",
    "trainable_parameters",
]

logger = logging.getLogger(__name__)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingExtraError("torch", "train", "CWRPO training") from None
    return torch


def resolve_device(config: ModelConfig) -> torch.device:
    """The configured device; ``auto`` is CUDA when available, else CPU."""
    torch = _torch()
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def resolve_dtype(config: ModelConfig, device: torch.device) -> torch.dtype:
    """Weights dtype: bf16 on GPU and fp32 on CPU unless the config says otherwise."""
    torch = _torch()
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, config.dtype)


def wrap_lora(model: Any, config: LoRAConfig) -> Any:
    """Add a trainable LoRA adapter (peft) to ``model``; every base weight is frozen."""
    try:
        from peft import LoraConfig, get_peft_model

        from flowsteer.director.shipped import quiet_peft
    except ImportError:
        raise MissingExtraError("peft", "train", "LoRA training") from None
    missing = [m for m in config.target_modules if not any(n.endswith(m) for n, _ in model.named_modules())]
    if missing:
        raise UserError(
            f"lora.target_modules {missing} match no module of this model: pick names from its layers, "
            "e.g. q_proj, k_proj, v_proj, o_proj for Llama/Qwen"
        )
    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with quiet_peft():
        return get_peft_model(model, peft_config)


def has_adapter(model: Any) -> bool:
    """True when ``model`` is a peft model (so the reference is the adapter-disabled model)."""
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def trainable_parameters(model: Any) -> list[Any]:
    """Parameters with ``requires_grad`` in a stable (named) order."""
    return [p for _, p in model.named_parameters() if p.requires_grad]


def load_policy(model_config: ModelConfig, lora_config: LoRAConfig) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` on the configured device, with the LoRA adapter when enabled."""
    _torch()  # a clear MissingExtraError before anything else
    device = resolve_device(model_config)
    dtype = resolve_dtype(model_config, device)
    if model_config.name_or_path == "embedded":
        from flowsteer.models.embedded import load_embedded_model

        model, tokenizer = load_embedded_model()
        model.to(dtype=dtype)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"dtype": dtype}
        if model_config.attn_implementation:
            kwargs["attn_implementation"] = model_config.attn_implementation
        tokenizer = AutoTokenizer.from_pretrained(model_config.name_or_path)
        model = AutoModelForCausalLM.from_pretrained(model_config.name_or_path, **kwargs)
    model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return prepare_policy(model, model_config, lora_config), tokenizer


def prepare_policy(model: Any, model_config: ModelConfig, lora_config: LoRAConfig) -> Any:
    """Apply LoRA and gradient checkpointing to an already loaded model (used for tiny test models)."""
    if model_config.gradient_checkpointing:
        # transformers 5.2x renamed it activation checkpointing (the old name warns)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()  # needed when only adapter weights require grad
    if lora_config.enabled:
        model = wrap_lora(model, lora_config)
    n_train = sum(p.numel() for p in trainable_parameters(model))
    n_all = sum(p.numel() for p in model.parameters())
    logger.info("policy: %d trainable of %d parameters", n_train, n_all)
    return model


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on GPU; nothing on CPU (fp32 there: CPU bf16 matmuls are slow and imprecise)."""
    torch = _torch()
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def _forward_logits(model: Any, input_ids: Tensor, attention_mask: Tensor, columns: Tensor | None) -> Tensor:
    """The model's logits at ``columns`` (all positions when None): ``[R, len(columns), V]``.
    Only those rows of the LM head are computed when the model takes ``logits_to_keep`` indices."""
    if columns is not None:
        try:
            return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                         logits_to_keep=columns).logits
        except TypeError:  # an architecture without logits_to_keep: compute all, keep the columns
            pass
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # [R, T, V]
    return logits if columns is None else logits[:, columns]


def token_logprobs(model: Any, input_ids: Tensor, attention_mask: Tensor, *, temperature: float = 1.0,
                   segments: Sequence[Sequence[Segment]] = (), replay: ConstraintReplay | None = None,
                   wanted: Tensor | None = None) -> Tensor:
    """``[R, T]`` log-prob of each token given the tokens before it (column 0, which has no
    context, is 0). Computed in fp32 from the model's logits divided by ``temperature``.

    ``wanted`` (``[R, T]`` bool, e.g. the loss mask) limits the work to the positions some row
    needs: the LM head and the log-softmax run only there (the prompt's ``[T, V]`` logits are never
    materialised) and every other column is 0. With ``segments`` (per row, its
    grammar-constrained completions) and a ``replay``, those tokens get the log-prob of the masked,
    renormalised distribution they were sampled from."""
    torch = _torch()
    rows, width = input_ids.shape
    columns = None  # logit positions computed (position j predicts token j + 1)
    if wanted is not None:
        columns = wanted[:, 1:].any(dim=0).nonzero().view(-1)  # [C]
        if columns.numel() == width - 1:
            columns = None
        elif columns.numel() == 0:  # nothing wanted: one column keeps the graph (and the loss) alive
            columns = columns.new_zeros(1)
    with autocast(input_ids.device):
        logits = _forward_logits(model, input_ids, attention_mask, columns)
    if columns is None:
        columns = torch.arange(width - 1, device=input_ids.device)  # [T-1]
        logits = logits[:, :-1]
    logits = logits.float() / temperature  # [R, C, V]
    targets = input_ids[:, columns + 1].unsqueeze(-1)  # [R, C, 1]
    # gather minus logsumexp avoids materialising a second [R, C, V] log-softmax tensor
    picked = logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [R, C]
    if replay is not None and any(segments):
        from .constrained import replay_segments

        picked = replay_segments(logits, picked, input_ids, segments, replay, columns=columns)
    full = picked.new_zeros(rows, width)  # [R, T]
    return full.index_copy(1, columns + 1, picked)


def reference_logprobs(model: Any, input_ids: Tensor, attention_mask: Tensor, *, temperature: float = 1.0,
                       segments: Sequence[Sequence[Segment]] = (), replay: ConstraintReplay | None = None,
                       wanted: Tensor | None = None) -> Tensor:
    """Log-probs under the reference policy: the base model with the LoRA adapter disabled."""
    torch = _torch()
    if not has_adapter(model):
        raise UserError(
            "the KL reference is the base model with the LoRA adapter disabled, but this model has no "
            "adapter: enable lora, or set loss.beta: 0 to train without the KL term"
        )
    with torch.no_grad(), model.disable_adapter():
        return token_logprobs(model, input_ids, attention_mask, temperature=temperature, segments=segments,
                              replay=replay, wanted=wanted)
