"""Padded training tensors built from the token ids the engine sampled (never from re-tokenised text).

Each director turn leaves a token record: ``prompt_ids`` (the exact context the policy saw, chat
template included), ``completion_ids`` (what it sampled, the end-of-sequence token included when it
stopped on it) and the engine's ``logprobs`` of those tokens. A trajectory becomes one or more rows:

* turn k+1 is appended to the row of turn k when its prompt extends that row token for token (the
  usual case: history grows by the canvas feedback); the new prompt tokens (feedback, template
  markers) get ``loss_mask`` 0 and the completion gets 1;
* otherwise (the director summarised or truncated its history) the turn starts a new row, so every
  completion is still scored in the context it was sampled in.

Rows of one trajectory share ``seq_index`` (used by per-trajectory aggregation) and its advantage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .constrained import Segment

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["TokenRecordLike", "Row", "PolicyBatch", "trajectory_rows", "build_batch"]


class TokenRecordLike(Protocol):
    """What the batch builder reads from a turn (``flowsteer.director.TokenRecord`` fits)."""

    @property
    def prompt_ids(self) -> Sequence[int]: ...
    @property
    def completion_ids(self) -> Sequence[int]: ...
    @property
    def logprobs(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class Row:
    """One row before padding: ids with their loss mask and engine log-probs, position-aligned."""

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    engine_logprobs: tuple[float, ...]
    segments: tuple[Segment, ...] = ()
    """Completions sampled under a grammar constraint (their log-probs are replayed masked)."""


def trajectory_rows(records: Sequence[TokenRecordLike | None], *, max_row_tokens: int | None = None,
                    mask_forced: bool = False) -> list[Row]:
    """Rows for one trajectory's turns (``None`` records, turns without sampled tokens, are skipped).

    ``mask_forced`` gives loss mask 0 to tokens the engine sampled with probability 1 (log-prob 0:
    forced by a grammar constraint). No choice was made there, so under the constrained policy their
    gradient is exactly 0; training them would only move the unconstrained logits.
    """
    rows: list[Row] = []
    ids: list[int] = []
    mask: list[int] = []
    lps: list[float] = []
    segments: list[Segment] = []
    for record in records:
        if record is None or not record.completion_ids:
            continue
        prompt = list(record.prompt_ids)
        completion = list(record.completion_ids)
        logprobs = [float(x) for x in record.logprobs]
        if len(logprobs) != len(completion):
            raise ValueError(
                f"token record has {len(completion)} completion ids but {len(logprobs)} log-probs: "
                "the engine must report one log-prob per sampled token"
            )
        if not ids and not prompt:
            raise ValueError("token record has no prompt_ids: the first sampled token needs a context")
        extends = bool(ids) and len(prompt) >= len(ids) and prompt[: len(ids)] == ids
        fits = max_row_tokens is None or len(prompt) + len(completion) <= max_row_tokens
        if ids and not (extends and fits):
            rows.append(Row(tuple(ids), tuple(mask), tuple(lps), tuple(segments)))
            ids, mask, lps, segments = [], [], [], []
        new_context = prompt[len(ids):]
        constraint = getattr(record, "constraint", None)
        if constraint:
            segments.append(Segment(len(ids) + len(new_context), len(completion), constraint))
        ids += new_context + completion
        mask += [0] * len(new_context) + [0 if mask_forced and lp >= 0.0 else 1 for lp in logprobs]
        lps += [0.0] * len(new_context) + logprobs
    if ids:
        rows.append(Row(tuple(ids), tuple(mask), tuple(lps), tuple(segments)))
    return rows


@dataclass
class PolicyBatch:
    """Right-padded ``[R, T]`` tensors for R rows; ``seq_index`` maps rows to trajectories."""

    input_ids: Tensor  # [R, T] long
    attention_mask: Tensor  # [R, T] long, 0 on padding
    loss_mask: Tensor  # [R, T] float, 1 on sampled policy tokens only
    engine_logprobs: Tensor  # [R, T] float, the engine's log-prob of each sampled token (0 elsewhere)
    advantages: Tensor  # [R] float, the trajectory's advantage on each of its rows
    seq_index: Tensor  # [R] long, trajectory number in 0..num_seqs-1
    episode_index: tuple[int, ...]  # trajectory number -> index of the episode it came from
    old_logprobs: Tensor | None = None  # [R, T] behaviour-policy log-probs, filled by the trainer
    ref_logprobs: Tensor | None = None  # [R, T] reference (adapter off) log-probs, filled by the trainer
    segments: tuple[tuple[Segment, ...], ...] = ()  # per row: its grammar-constrained completions

    @property
    def num_seqs(self) -> int:
        return len(self.episode_index)

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum().item())

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    def rows_of(self, seqs: Sequence[int]) -> list[int]:
        """Row numbers belonging to trajectories ``seqs``."""
        wanted = set(seqs)
        return [r for r in range(self.num_rows) if int(self.seq_index[r]) in wanted]

    def select(self, seqs: Sequence[int]) -> PolicyBatch:
        """The rows of trajectories ``seqs`` (renumbered 0..len-1), padding trimmed to the longest row."""
        import torch

        order = {s: i for i, s in enumerate(seqs)}
        rows = self.rows_of(seqs)
        index = torch.tensor(rows, dtype=torch.long)
        width = int(self.attention_mask[index].sum(-1).max().item()) if rows else 0

        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index, :width]

        return PolicyBatch(
            input_ids=self.input_ids[index, :width],
            attention_mask=self.attention_mask[index, :width],
            loss_mask=self.loss_mask[index, :width],
            engine_logprobs=self.engine_logprobs[index, :width],
            advantages=self.advantages[index],
            seq_index=torch.tensor([order[int(self.seq_index[r])] for r in rows], dtype=torch.long),
            episode_index=tuple(self.episode_index[s] for s in seqs),
            old_logprobs=pick(self.old_logprobs),
            ref_logprobs=pick(self.ref_logprobs),
            segments=tuple(self.segments[r] for r in rows) if self.segments else (),
        )

    def to(self, device: Any) -> PolicyBatch:
        """A copy with every tensor on ``device``."""
        return PolicyBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            loss_mask=self.loss_mask.to(device),
            engine_logprobs=self.engine_logprobs.to(device),
            advantages=self.advantages.to(device),
            seq_index=self.seq_index.to(device),
            episode_index=self.episode_index,
            old_logprobs=None if self.old_logprobs is None else self.old_logprobs.to(device),
            ref_logprobs=None if self.ref_logprobs is None else self.ref_logprobs.to(device),
            segments=self.segments,
        )


def build_batch(
    trajectories: Sequence[Sequence[TokenRecordLike | None]],
    advantages: Sequence[float],
    *,
    pad_token_id: int = 0,
    max_row_tokens: int | None = None,
    mask_forced: bool = False,
) -> PolicyBatch:
    """Pad every trajectory's rows into one :class:`PolicyBatch`.

    ``trajectories[i]`` is the list of token records of episode ``i`` (one per turn) and
    ``advantages[i]`` its advantage. Episodes without any sampled tokens get no rows (they cannot be
    trained on); ``episode_index`` says which episodes are present.
    """
    import torch

    if len(trajectories) != len(advantages):
        raise ValueError(f"{len(trajectories)} trajectories but {len(advantages)} advantages")
    rows: list[Row] = []
    seq_of_row: list[int] = []
    row_adv: list[float] = []
    present: list[int] = []
    for episode, (records, advantage) in enumerate(zip(trajectories, advantages, strict=True)):
        episode_rows = trajectory_rows(records, max_row_tokens=max_row_tokens, mask_forced=mask_forced)
        if not episode_rows:
            continue
        for row in episode_rows:
            rows.append(row)
            seq_of_row.append(len(present))
            row_adv.append(float(advantage))
        present.append(episode)
    width = max((len(r.input_ids) for r in rows), default=0)
    n = len(rows)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)  # [R, T]
    attention = torch.zeros((n, width), dtype=torch.long)  # [R, T]
    loss_mask = torch.zeros((n, width), dtype=torch.float32)  # [R, T]
    engine = torch.zeros((n, width), dtype=torch.float32)  # [R, T]
    for i, row in enumerate(rows):
        length = len(row.input_ids)
        input_ids[i, :length] = torch.tensor(row.input_ids, dtype=torch.long)
        attention[i, :length] = 1
        loss_mask[i, :length] = torch.tensor(row.loss_mask, dtype=torch.float32)
        engine[i, :length] = torch.tensor(row.engine_logprobs, dtype=torch.float32)
    return PolicyBatch(
        input_ids=input_ids,
        attention_mask=attention,
        loss_mask=loss_mask,
        engine_logprobs=engine,
        advantages=torch.tensor(row_adv, dtype=torch.float32),  # [R]
        seq_index=torch.tensor(seq_of_row, dtype=torch.long),  # [R]
        episode_index=tuple(present),
        segments=tuple(r.segments for r in rows) if any(r.segments for r in rows) else (),
    )
