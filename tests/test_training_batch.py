"""Batch building from token records: masks, EOS, feedback, rows, and the policy log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from flowsteer.training.batch import build_batch, trajectory_rows  # noqa: E402


@dataclass(frozen=True)
class Rec:
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]


EOS = 99


def test_multi_turn_trajectory_masks_prompt_and_feedback_trains_completions_and_eos():
    turn1 = Rec([1, 2, 3], [10, 11, EOS], [-0.1, -0.2, -0.3])
    # the next context = previous context + completion + canvas feedback [50, 51] + template [4]
    turn2 = Rec([1, 2, 3, 10, 11, EOS, 50, 51, 4], [12, EOS], [-0.4, -0.5])
    rows = trajectory_rows([turn1, turn2])
    assert len(rows) == 1
    row = rows[0]
    assert row.input_ids == (1, 2, 3, 10, 11, EOS, 50, 51, 4, 12, EOS)
    assert row.loss_mask == (0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1)
    assert row.engine_logprobs == pytest.approx((0, 0, 0, -0.1, -0.2, -0.3, 0, 0, 0, -0.4, -0.5))
    # the end-of-sequence token the engine sampled is a trained token
    assert row.loss_mask[row.input_ids.index(EOS)] == 1


def test_a_rewritten_history_starts_a_new_row_of_the_same_trajectory():
    turn1 = Rec([1, 2, 3], [10, EOS], [-0.1, -0.2])
    turn2 = Rec([1, 7, 8], [12, EOS], [-0.3, -0.4])  # summarised history: not a prefix extension
    rows = trajectory_rows([turn1, None, turn2])
    assert [r.input_ids for r in rows] == [(1, 2, 3, 10, EOS), (1, 7, 8, 12, EOS)]
    capped = trajectory_rows([turn1, Rec([1, 2, 3, 10, EOS, 5], [6], [-1.0])], max_row_tokens=6)
    assert len(capped) == 2
    with pytest.raises(ValueError, match="log-prob"):
        trajectory_rows([Rec([1], [2, 3], [-0.1])])


def test_build_batch_pads_and_indexes_trajectories():
    a = [Rec([1, 2], [3, EOS], [-1.0, -2.0])]
    b = [Rec([1], [5, EOS], [-0.5, -0.6]), Rec([9, 9], [7], [-0.7])]
    empty: list = [None]
    batch = build_batch([a, empty, b], [1.0, 0.0, -1.0], pad_token_id=0)
    assert batch.episode_index == (0, 2)  # the episode without tokens has no rows
    assert batch.input_ids.tolist() == [[1, 2, 3, EOS], [1, 5, EOS, 0], [9, 9, 7, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 1, 0]]
    assert batch.seq_index.tolist() == [0, 1, 1]
    assert batch.advantages.tolist() == [1.0, -1.0, -1.0]
    assert batch.num_seqs == 2 and batch.num_tokens == 5
    sub = batch.select([1])
    assert sub.input_ids.tolist() == [[1, 5, EOS], [9, 9, 7]]
    assert sub.seq_index.tolist() == [0, 0] and sub.episode_index == (2,)


def test_policy_logprobs_align_with_tokens_and_match_the_sampler():
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer
    from flowsteer.training.policy import token_logprobs

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok, seed=1)
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0]])
    attn = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    lp = token_logprobs(model, ids, attn, temperature=0.5)
    assert lp.shape == (2, 4) and lp[:, 0].abs().sum() == 0
    with torch.no_grad():
        logits = model(input_ids=ids[:1, :3]).logits[0, -1] / 0.5
    expected = torch.log_softmax(logits, -1)[8]
    assert lp[0, 3].item() == pytest.approx(expected.item(), abs=1e-5)
    # right padding does not change the real tokens' log-probs
    alone = token_logprobs(model, ids[1:, :3], attn[1:, :3], temperature=0.5)
    assert torch.allclose(alone, lp[1:, :3], atol=1e-5)


@pytest.mark.parametrize("keeps", [True, False])
def test_wanted_positions_only_compute_those_logits(keeps):
    """With ``wanted`` the LM head runs on the needed positions only; their log-probs equal the
    full pass's, other columns are 0, and gradients flow (also for models without logits_to_keep)."""
    from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer
    from flowsteer.training.policy import token_logprobs

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok, seed=2)
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *, input_ids, attention_mask, use_cache, **kwargs):
            if "logits_to_keep" in kwargs and not keeps:
                raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, **kwargs)
            seen.append(tuple(out.logits.shape))
            return out

    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 9, 11, 12, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    wanted = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 0]], dtype=torch.bool)
    full = token_logprobs(model, ids, attn, temperature=0.7)
    part = token_logprobs(Spy(), ids, attn, temperature=0.7, wanted=wanted)
    assert seen[-1][1] == (2 if keeps else 6)  # columns 2 and 3 predict tokens 3 and 4
    assert torch.allclose(part[:, 3:5], full[:, 3:5], atol=1e-5)
    assert part[:, :3].abs().sum() == 0 and part[:, 5].abs().sum() == 0
    model.zero_grad()
    (part * wanted).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_forced_tokens_can_be_left_out_of_the_loss():
    # log-prob 0.0: the grammar allowed only this token; the EOS was a real choice (-0.2)
    turn = Rec([1, 2], [10, 11, EOS], [0.0, -0.7, -0.2])
    assert trajectory_rows([turn])[0].loss_mask == (0, 0, 1, 1, 1)
    assert trajectory_rows([turn], mask_forced=True)[0].loss_mask == (0, 0, 0, 1, 1)
    batch = build_batch([[turn]], [1.0], mask_forced=True)
    assert batch.loss_mask.tolist() == [[0, 0, 0, 1, 1]]
