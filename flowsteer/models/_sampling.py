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

__all__ = ["SamplingParams", "Sampled", "PrefixCache", "sample_batch"]


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


class PrefixCache:
    """The KV caches of the last few single-prompt prefills, reused for a shared prompt prefix.

    A director sends the same system prompt and worked example every turn (~1,000 tokens), with
    prompt-writing and executor calls in between; reusing their keys and values makes a turn's
    prefill cost only its new tokens. Only batch-size-1 calls use it (the CLI's case); the reused
    prefix changes results only by float rounding (chunked vs whole prefill).
    """

    def __init__(self, entries: int = 4, min_tokens: int = 64) -> None:
        self.entries = entries
        self.min_tokens = min_tokens
        self._items: list[tuple[list[int], Any]] = []
        self.hits = 0

    def lookup(self, prompt: list[int]) -> tuple[int, Any]:
        """``(n, cache)``: a private copy of the cache for the longest stored prefix of ``prompt``
        (cropped to ``n`` tokens, leaving at least one new token), or ``(0, None)``."""
        import copy

        best, best_cache = 0, None
        for ids, cache in self._items:
            n = _common_prefix(ids, prompt)
            if n > best:
                best, best_cache = n, cache
        best = min(best, len(prompt) - 1)
        if best < self.min_tokens or best_cache is None:
            return 0, None
        cache = copy.deepcopy(best_cache)
        surplus = cache.get_seq_length() - best
        if surplus > 0:
            cache.crop(-surplus)  # negative = tokens to drop (the form every transformers version takes)
        self.hits += 1
        return best, cache

    def clear(self) -> None:
        """Forget every stored prefix (call it whenever the model's weights change)."""
        self._items = []

    def store(self, prompt: list[int], cache: Any) -> None:
        import copy

        self._items = [(ids, c) for ids, c in self._items if ids != prompt]
        self._items.append((list(prompt), copy.deepcopy(cache)))
        del self._items[: -self.entries]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
    prefix_cache: PrefixCache | None = None,
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
    reuse = prefix_cache is not None and prefix_cache.entries > 0 and batch == 1
    if reuse:
        assert prefix_cache is not None
        done, past = prefix_cache.lookup(list(prompts[0]))
        step_ids, step_pos = input_ids[:, done:], positions[:, done:]
    cache_arg, extra = _forward_args(model)
    with torch.inference_mode():
        for step in range(params.max_new_tokens):
            out = model(input_ids=step_ids, attention_mask=attention, position_ids=step_pos,
                        use_cache=True, **{cache_arg: past}, **extra)
            past = getattr(out, "cache", None) or out.past_key_values
            if reuse and step == 0:
                assert prefix_cache is not None
                prefix_cache.store(list(prompts[0]), past)
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

    # a peft wrapper's forward takes **kwargs: the base model's signature says which name it reads
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(base.forward).parameters
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
