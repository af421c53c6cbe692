"""A batched sampling loop over a transformers causal LM that keeps exactly what it sampled.

Why our own loop instead of ``model.generate``: the director's action grammar needs one logits
processor *per row* (each prompt has its own canvas state), stop strings must end each row on its
own and cut the text exactly, and training needs the log-probability of every sampled token under
the distribution it was really drawn from (after the constraint, temperature and top-p). Doing the
few steps ourselves (prefill, then one token at a time with the KV cache) makes each of those a
line of code instead of a fight with ``generate``'s batch-wide processors and warpers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SamplingParams", "Sampled", "sample_batch"]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by every row of a batch."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Text stop strings; the returned text ends before the first one."""
    seed: int | None = None


@dataclass(frozen=True)
class Sampled:
    """One row's result."""

    text: str
    completion_ids: list[int]
    """Every sampled token, including an end-of-sequence token or the tokens of a stop string."""
    logprobs: list[float]
    """Per sampled token: log-probability under the processed distribution it was drawn from."""
    finish_reason: str
    """``"stop"`` (eos or stop string) or ``"length"``."""


# (prompt ids + completion so far as [1, T], scores [1, V]) -> scores; transformers' LogitsProcessor shape
RowProcessor = Callable[[Any, Any], Any]


def _top_p_filter(logits: Any, top_p: float) -> Any:
    """Mask (to -inf) the tokens outside the smallest set whose probability reaches ``top_p``."""
    import torch

    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # [B, V]
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # [B, V]
    remove = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # keep the token that crosses top_p
    remove[..., 0] = False
    mask = torch.zeros_like(remove).scatter(-1, order, remove)
    return logits.masked_fill(mask, float("-inf"))


def _process(
    logits: Any,
    rows: list[list[int]],
    processors: Sequence[RowProcessor | None],
    params: SamplingParams,
) -> Any:
    """Raw next-token logits [B, V] -> the distribution actually sampled from, as logits [B, V]."""
    import torch

    logits = logits.float()
    if any(p is not None for p in processors):
        out = []
        for i, proc in enumerate(processors):
            row = logits[i : i + 1]
            if proc is not None:
                ids = torch.tensor([rows[i]], dtype=torch.long, device=logits.device)
                row = proc(ids, row)
            out.append(row)
        logits = torch.cat(out, dim=0)
    if params.temperature > 0:
        logits = logits / params.temperature
        if params.top_p < 1.0:
            logits = _top_p_filter(logits, params.top_p)
    return logits


def _find_stop(text: str, stops: tuple[str, ...]) -> int:
    cut = -1
    for s in stops:
        at = text.find(s)
        if at >= 0 and (cut < 0 or at < cut):
            cut = at
    return cut


def sample_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    params: SamplingParams,
    processors: Sequence[RowProcessor | None] | None = None,
    eos_ids: Sequence[int] = (),
    generators: Sequence[Any] | None = None,
) -> list[Sampled]:
    """Generate a completion for each prompt (token ids, unpadded) in one left-padded batch."""
    import torch

    device = next(model.parameters()).device
    batch = len(prompts)
    processors = list(processors) if processors is not None else [None] * batch
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (list(eos_ids) or [0])[0]
    width = max(len(p) for p in prompts)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long, device=device)  # [B, T]
    attention = torch.zeros((batch, width), dtype=torch.long, device=device)  # [B, T]
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[i, width - len(p) :] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # [B, T]
    completions: list[list[int]] = [[] for _ in range(batch)]
    logprobs: list[list[float]] = [[] for _ in range(batch)]
    texts: list[str | None] = [None] * batch
    eos = set(eos_ids)
    past = None
    step_ids, step_pos = input_ids, positions
    cache_arg, extra = _forward_args(model)
    with torch.inference_mode():
        for _ in range(params.max_new_tokens):
            out = model(input_ids=step_ids, attention_mask=attention, position_ids=step_pos,
                        use_cache=True, **{cache_arg: past}, **extra)
            past = getattr(out, "cache", None) or out.past_key_values
            rows = [list(prompts[i]) + completions[i] for i in range(batch)]
            logits = _process(out.logits[:, -1, :], rows, processors, params)  # [B, V]
            logp = torch.log_softmax(logits, dim=-1)  # [B, V]
            chosen = _choose(logits, params, generators)  # [B]
            for i in range(batch):
                if texts[i] is not None:
                    continue
                token = int(chosen[i])
                completions[i].append(token)
                logprobs[i].append(float(logp[i, token]))
                texts[i] = _finished_text(tokenizer, completions[i], token, eos, params.stop)
            if all(t is not None for t in texts):
                break
            step_ids = chosen.view(batch, 1)
            step_pos = step_pos[:, -1:] + 1
            attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype, device=device)], 1)
    results = []
    for i in range(batch):
        done = texts[i] is not None
        text = texts[i] if done else tokenizer.decode(completions[i], skip_special_tokens=True)
        results.append(Sampled(text or "", completions[i], logprobs[i], "stop" if done else "length"))
    return results


def _forward_args(model: Any) -> tuple[str, dict[str, Any]]:
    """The KV-cache argument name (transformers 5.2x renamed ``past_key_values`` to ``cache``) and
    ``logits_to_keep=1`` when supported (the prefill then skips the vocabulary projection of every
    prompt position but the last)."""
    import inspect

    names = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in names else "past_key_values"
    extra = {"logits_to_keep": 1} if "logits_to_keep" in names else {}
    return cache_arg, extra


def _choose(logits: Any, params: SamplingParams, generators: Sequence[Any] | None) -> Any:
    import torch

    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)  # [B, V]
    if generators is None:
        return torch.multinomial(probs, 1).view(-1)
    picks = [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
    return torch.cat(picks).view(-1)


def _finished_text(tokenizer: Any, ids: list[int], last: int, eos: set[int], stops: tuple[str, ...]) -> str | None:
    """The final text if this row just finished (eos or a stop string), else None."""
    ended = last in eos
    if not ended and not stops:
        return None
    text = tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=True)
    cut = _find_stop(text, stops)
    if cut >= 0:
        return text[:cut]
    return text if ended else None
