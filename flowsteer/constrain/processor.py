"""Enforcing an action grammar at decoding time (transformers logits processor) and replaying it.

:class:`GrammarLogitsProcessor` masks every token the :class:`~flowsteer.constrain.trie.TokenAutomaton`
does not allow to ``-inf`` (end-of-sequence only where the output is complete). It is called as
``proc(input_ids [B, T], scores [B, V]) -> scores`` like any transformers ``LogitsProcessor``, works
with ``model.generate`` and with :class:`~flowsteer.models.local.LocalChatModel`'s
``logits_processor_factory`` (see :class:`GrammarProcessorFactory`).

Training correctness: a constrained rollout's recorded log-probs are those of the masked and
renormalised distribution it was sampled from. :func:`constrained_logprobs` recomputes them from the
model's logits by replaying the automaton over the sampled ids (:func:`allowed_masks`), with the same
mask, temperature and top-p, so the trainer's ratio and KL compare like with like.

torch is imported here at module level: import this module only when a local model is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from flowsteer.constrain.grammar import ActionGrammar
from flowsteer.constrain.trie import Allowed, AutomatonState, TokenAutomaton
from flowsteer.errors import UserError

__all__ = [
    "GrammarLogitsProcessor",
    "GrammarProcessorFactory",
    "allowed_mask",
    "allowed_masks",
    "constrained_logprobs",
]

logger = logging.getLogger(__name__)

_MASK_CACHE_LIMIT = 256


def _free_tensor(automaton: TokenAutomaton, forbid: str, width: int) -> torch.Tensor:
    cache = automaton.memo.setdefault("torch_free", {})
    key = (forbid, width)
    if key not in cache:
        table = torch.tensor(list(automaton.free_table(forbid)), dtype=torch.bool)
        mask = torch.zeros(width, dtype=torch.bool)
        n = min(width, table.numel())
        mask[:n] = table[:n]
        cache[key] = mask
    return cache[key]


def allowed_mask(automaton: TokenAutomaton, allowed: Allowed, width: int) -> torch.Tensor:
    """Boolean ``[width]`` mask of the tokens ``allowed`` permits (cached per distinct ``allowed``)."""
    cache: dict[tuple[Allowed, int], torch.Tensor] = automaton.memo.setdefault("torch_masks", {})
    key = (allowed, width)
    mask = cache.get(key)
    if mask is not None:
        return mask
    mask = torch.zeros(width, dtype=torch.bool)
    for forbid in allowed.free:
        mask |= _free_tensor(automaton, forbid, width)
    ids = [t for t in allowed.tokens if t < width]
    if allowed.eos:
        ids += [t for t in automaton.eos_ids if t < width]
    if ids:
        mask[torch.tensor(ids, dtype=torch.long)] = True
    if not mask.any():  # a dead end cannot happen by construction; end rather than sample garbage
        logger.warning("grammar automaton reached a dead end; allowing only end-of-sequence")
        mask[[t for t in automaton.eos_ids if t < width]] = True
    if len(cache) < _MASK_CACHE_LIMIT:
        cache[key] = mask
    return mask


def allowed_masks(
    automaton: TokenAutomaton,
    completion_ids: Sequence[int],
    width: int,
    *,
    max_new_tokens: int | None = None,
) -> torch.Tensor:
    """``[T, width]`` boolean masks the processor applied before each of the ``T`` sampled tokens
    (all False from the first token the grammar does not allow: the ids left it there)."""
    states = automaton.replay(completion_ids)
    rows = []
    for step in range(len(completion_ids)):
        if not states[step]:
            # the ids left the grammar before this token (e.g. a server tokenised the output its own
            # way): nothing of the grammar applies any more, which is not a dead end of the grammar
            rows.append(torch.zeros(width, dtype=torch.bool))
            continue
        remaining = None if max_new_tokens is None else max_new_tokens - step
        rows.append(allowed_mask(automaton, automaton.allowed(states[step], remaining), width))
    if not rows:
        return torch.zeros((0, width), dtype=torch.bool)
    return torch.stack(rows)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (the sampler's rule)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # [T, V]
    probs = sorted_logits.softmax(dim=-1)  # [T, V]
    drop = (probs.cumsum(dim=-1) - probs) >= top_p  # [T, V]
    drop[..., 0] = False
    mask = torch.zeros_like(drop).scatter(-1, order, drop)  # [T, V]
    return logits.masked_fill(mask, float("-inf"))


def constrained_logprobs(
    logits: torch.Tensor,
    completion_ids: Sequence[int] | torch.Tensor,
    automaton: TokenAutomaton | None = None,
    *,
    masks: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int | None = None,
) -> torch.Tensor:
    """``[T]`` log-probs of the sampled tokens under the constrained distribution they came from.

    ``logits`` is ``[T, V]``: row ``t`` the model's raw logits before completion token ``t``. The
    allowed set per step comes from ``masks`` ([T, V] bool) or is rebuilt by replaying ``automaton``
    over ``completion_ids`` (pass the ``max_new_tokens`` the rollout used: the budget shapes the
    mask near the end). Then, as in sampling: mask to -inf, divide by ``temperature`` (0 means
    greedy: temperature 1, no top-p), apply top-p, log-softmax. Differentiable in ``logits``.
    """
    ids = torch.as_tensor(list(completion_ids) if not isinstance(completion_ids, torch.Tensor)
                          else completion_ids, dtype=torch.long, device=logits.device)  # [T]
    if masks is None:
        if automaton is None:
            raise ValueError("constrained_logprobs needs the automaton (to replay) or the masks")
        masks = allowed_masks(automaton, ids.tolist(), logits.shape[-1], max_new_tokens=max_new_tokens)
    x = logits.float().masked_fill(~masks.to(logits.device), float("-inf"))  # [T, V]
    if temperature > 0:
        x = x / temperature
        if top_p < 1.0:
            x = _top_p(x, top_p)
    return torch.log_softmax(x, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [T]


class GrammarLogitsProcessor:
    """Masks disallowed tokens to ``-inf``; one automaton state per batch row, advanced incrementally.

    ``prompt_len`` is the number of prompt tokens in ``input_ids`` (left padding included, for
    ``generate`` on a padded batch); with ``max_new_tokens`` the output is forced to complete in time.
    """

    def __init__(self, automaton: TokenAutomaton, prompt_len: int, *, max_new_tokens: int | None = None) -> None:
        self.automaton = automaton
        self.prompt_len = prompt_len
        self.max_new_tokens = max_new_tokens
        self._rows: dict[int, tuple[list[int], AutomatonState]] = {}

    def state(self, row: int, completion: list[int]) -> AutomatonState:
        """The automaton state after ``completion`` for batch row ``row`` (incremental when possible)."""
        seen, state = self._rows.get(row, ([], self.automaton.start()))
        if completion[: len(seen)] != seen:
            seen, state = [], self.automaton.start()
        for token in completion[len(seen):]:
            state = self.automaton.advance(state, token)
        self._rows[row] = (list(completion), state)
        return state

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()
        eos = set(self.automaton.eos_ids)
        for row in range(scores.shape[0]):
            completion = [int(t) for t in input_ids[row, self.prompt_len:]]
            if eos.intersection(completion):
                # a row that already ended keeps being padded while the rest of its batch decodes:
                # it has no grammar state to continue (this, not the grammar, was the "dead end")
                out[row] = torch.full_like(scores[row], float("-inf"))
                out[row, [t for t in eos if t < scores.shape[-1]]] = 0.0
                continue
            remaining = None if self.max_new_tokens is None else self.max_new_tokens - len(completion)
            allowed = self.automaton.allowed(self.state(row, completion), remaining)
            mask = allowed_mask(self.automaton, allowed, scores.shape[-1]).to(scores.device)
            out[row] = scores[row].masked_fill(~mask, float("-inf"))
        return out


class GrammarProcessorFactory:
    """``(prompt_ids, messages) -> GrammarLogitsProcessor`` for LocalChatModel's hook.

    Compiles ``grammar`` over ``tokenizer`` once; ``grammar`` stays readable (``.grammar``) so the
    caller can store it with the turn for the trainer's replay.
    """

    def __init__(self, grammar: ActionGrammar, tokenizer: Any, *, eos_ids: Iterable[int] | None = None,
                 max_new_tokens: int | None = None) -> None:
        self.grammar = grammar
        self.max_new_tokens = max_new_tokens
        self.automaton = TokenAutomaton(grammar, tokenizer, eos_ids=eos_ids)
        if max_new_tokens is not None:
            shortest = self.automaton.distance(self.automaton.roots[grammar.start]) + 1  # + the end token
            if shortest > max_new_tokens:
                # the only way the grammar could dead-end: no action fits the budget at all
                raise UserError(f"max_new_tokens={max_new_tokens} cannot hold any action of this grammar: "
                                f"the shortest takes {shortest} tokens of this tokenizer; raise the director's "
                                "max_action_tokens (training: director.max_action_tokens)")

    def __call__(self, prompt_ids: Sequence[int], messages: Any = None) -> GrammarLogitsProcessor:
        return GrammarLogitsProcessor(self.automaton, len(prompt_ids), max_new_tokens=self.max_new_tokens)
