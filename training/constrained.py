"""Log-probs of grammar-constrained turns, recomputed the way they were sampled.

A constrained director turn was drawn from the model's distribution masked to the tokens the action
grammar allowed at each step and renormalised. Its token record keeps that grammar
(:attr:`flowsteer.director.TokenRecord.constraint`); :class:`ConstraintReplay` rebuilds the token
automaton from it (cached: the turns of one canvas state share a grammar), replays the sampled ids
to get the mask before each token, and :func:`replay_segments` swaps the plain log-probs of those
positions for the masked, renormalised ones. The trainer does this for the behaviour policy, the
current policy and the KL reference alike, so ratio and KL compare the distribution that was
actually sampled (grammar-forced tokens then have log-prob exactly 0 under every policy).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Segment", "ConstraintReplay", "replay_segments"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """A constrained completion inside a row: tokens ``start .. start + length - 1``."""

    start: int
    length: int
    constraint: dict[str, Any]
    """The turn's :attr:`~flowsteer.director.TokenRecord.constraint` (grammar JSON, end ids, budget)."""


class ConstraintReplay:
    """Turns a recorded constraint and the sampled ids into the per-step masks of the sampler."""

    def __init__(self, tokenizer: Any, *, model: Any = None, cache_size: int = 64) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.cache_size = cache_size
        self._automata: OrderedDict[tuple[str, tuple[int, ...] | None], Any] = OrderedDict()
        self.fallbacks = 0
        """Segments whose sampled ids the automaton rejects (replayed unconstrained instead)."""

    def automaton(self, constraint: dict[str, Any]) -> Any:
        """The token automaton of ``constraint`` over this tokenizer (least recently used cache)."""
        from flowsteer.constrain.grammar import ActionGrammar
        from flowsteer.constrain.trie import TokenAutomaton, eos_ids_of

        eos = constraint.get("eos_ids")
        key = (str(constraint["grammar"]), None if eos is None else tuple(int(t) for t in eos))
        found = self._automata.get(key)
        if found is not None:
            self._automata.move_to_end(key)
            return found
        eos_ids = key[1] if key[1] is not None else eos_ids_of(self.tokenizer, self.model)
        built = TokenAutomaton(ActionGrammar.from_json(key[0]), self.tokenizer, eos_ids=eos_ids)
        self._automata[key] = built
        if len(self._automata) > self.cache_size:
            self._automata.popitem(last=False)
        return built

    def masks(self, constraint: dict[str, Any], completion_ids: Sequence[int], width: int) -> Tensor | None:
        """``[n, width]`` allowed-token masks before each sampled token, or None when the ids are
        not a path of the grammar (e.g. a server tokenised an output differently)."""
        import torch

        from flowsteer.constrain.processor import allowed_masks

        automaton = self.automaton(constraint)
        masks = allowed_masks(automaton, list(completion_ids), width,
                              max_new_tokens=constraint.get("max_new_tokens"))
        ids = torch.as_tensor(list(completion_ids), dtype=torch.long)
        if not bool(masks[torch.arange(len(ids)), ids].all()):
            self.fallbacks += 1
            logger.warning("a constrained completion leaves its recorded grammar; its log-probs are "
                           "recomputed unconstrained")
            return None
        return masks


def replay_segments(logits: Tensor, picked: Tensor, input_ids: Tensor, segments: Sequence[Sequence[Segment]],
                    replay: ConstraintReplay, *, columns: Tensor | None = None) -> Tensor:
    """``picked`` ([R, C], log-prob of token ``columns[c] + 1`` in column ``c``) with the positions of
    every constrained segment replaced by the masked, renormalised log-probs from ``logits``
    ([R, C, V], already divided by the temperature). ``columns`` None means ``0 .. T-2``. Segment
    tokens whose position was not computed are left out. Differentiable in ``logits``."""
    import torch

    from flowsteer.constrain.processor import constrained_logprobs

    width = logits.shape[-1]
    if columns is None:
        columns = torch.arange(picked.shape[1], device=picked.device)
    where = torch.full((input_ids.shape[1],), -1, dtype=torch.long, device=picked.device)  # [T]
    where[columns + 1] = torch.arange(columns.numel(), device=picked.device)  # token position -> column
    rows: list[Tensor] = []
    cols: list[Tensor] = []
    values: list[Tensor] = []
    for r, row_segments in enumerate(segments):
        for seg in row_segments:
            ids = input_ids[r, seg.start : seg.start + seg.length]  # [n]
            masks = replay.masks(seg.constraint, ids.tolist(), width)
            if masks is None:
                continue
            at = where[seg.start : seg.start + seg.length]  # [n]
            keep = at >= 0
            if not bool(keep.any()):
                continue
            # logits are already divided by the temperature: mask and renormalise only
            lp = constrained_logprobs(logits[r, at[keep]], ids[keep], masks=masks.to(logits.device)[keep])  # [k]
            rows.append(torch.full_like(at[keep], r))
            cols.append(at[keep])
            values.append(lp)
    if not values:
        return picked
    return picked.index_put((torch.cat(rows), torch.cat(cols)), torch.cat(values).to(picked.dtype))
