"""Constrained rollouts are trained on the distribution they were sampled from (issue 11).

A tiny random director runs real constrained episodes on a canvas; each turn's token record keeps
its grammar; the trainer's log-prob pass replays that grammar and must reproduce the sampling-time
log-probs (masked and renormalised), where the plain model log-probs do not.
"""

from __future__ import annotations

import asyncio
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from flowsteer.canvas import Canvas, CanvasConfig  # noqa: E402
from flowsteer.constrain import action_constraint, action_grammar  # noqa: E402
from flowsteer.director import Director, DirectorConfig, TokenRecord  # noqa: E402
from flowsteer.director.config import CONSTRAINT_RECORD_KEY  # noqa: E402
from flowsteer.testing import SimulatedExecutor  # noqa: E402
from flowsteer.training.batch import build_batch, trajectory_rows  # noqa: E402
from flowsteer.training.config import LossConfig  # noqa: E402
from flowsteer.training.constrained import ConstraintReplay, Segment  # noqa: E402
from flowsteer.training.policy import token_logprobs  # noqa: E402
from flowsteer.training.update import UpdateSettings, accumulate_gradients, fill_logprobs  # noqa: E402

TEMPERATURE = 0.8
BUDGET = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat():
    from flowsteer.testing.tiny import tiny_chat_model

    return tiny_chat_model(seed=3, max_batch_size=8, batch_wait_s=0.02)


@pytest.fixture(scope="module")
def trajectories(chat):
    """Four constrained episodes (top-p 1: the trainer's replay is mask + temperature)."""
    constraint = action_constraint(max_new_tokens=BUDGET, think_tokens=6, prompt_tokens=12)
    config = DirectorConfig(max_turns=4, temperature=TEMPERATURE, top_p=1.0, max_action_tokens=BUDGET,
                            max_prompt_tokens=12, context_budget=3000, usage_hints=False,
                            constraint=constraint, extra_call_kwargs={"seed": 11})
    director = Director(chat, config=config)
    tasks = ["What is 2 + 3?", "What is 7 * 6?", "What is 10 - 4?", "What is 9 + 9?"]
    return asyncio.run(director.arun_many(tasks, lambda: Canvas(SimulatedExecutor(seed=0),
                                                                 config=CanvasConfig(max_turns=4)),
                                          concurrency=4, on_error="raise"))


def _records(trajectories):
    return [[t.tokens for t in traj.turns] for traj in trajectories]


def test_every_constrained_turn_records_its_grammar(trajectories):
    turns = [t for traj in trajectories for t in traj.turns]
    assert turns and all(t.tokens is not None and t.tokens.constraint for t in turns)
    for t in turns:
        spec = t.tokens.constraint
        assert set(spec) == {"grammar", "eos_ids", "max_new_tokens"}
        assert spec["max_new_tokens"] == BUDGET and spec["eos_ids"]
    # the record survives the trajectory's JSON form and rebuilds a TokenRecord
    data = json.loads(json.dumps(trajectories[0].to_dict()))
    first = data["turns"][0]["tokens"]
    assert TokenRecord(**first) == trajectories[0].turns[0].tokens


def test_the_record_key_never_reaches_the_model(chat):
    seen = []

    class Spy(type(chat)):
        async def ainvoke(self, messages, **kwargs):  # type: ignore[override]
            seen.append(set(kwargs))
            return await super().ainvoke(messages, **kwargs)

    spy = Spy(model=chat.model, tokenizer=chat.tokenizer)
    config = DirectorConfig(max_turns=1, max_action_tokens=BUDGET, constraint=action_constraint(max_new_tokens=BUDGET))
    asyncio.run(Director(spy, config=config).arun("What is 1 + 1?", Canvas(SimulatedExecutor())))
    assert seen and all(CONSTRAINT_RECORD_KEY not in kw and "logits_processor_factory" in kw for kw in seen)


def test_trainer_replay_reproduces_sampling_time_logprobs(chat, trajectories):
    records = _records(trajectories)
    batch = build_batch(records, [1.0] * len(records), pad_token_id=chat.tokenizer.pad_token_id)
    assert any(batch.segments)
    replay = ConstraintReplay(chat.tokenizer)
    with torch.no_grad():
        replayed = token_logprobs(chat.model, batch.input_ids, batch.attention_mask, temperature=TEMPERATURE,
                                  segments=batch.segments, replay=replay)
        plain = token_logprobs(chat.model, batch.input_ids, batch.attention_mask, temperature=TEMPERATURE)
    sampled = batch.loss_mask.bool()
    gap = (replayed - batch.engine_logprobs).abs()[sampled]
    assert gap.max() < 2e-4, float(gap.max())
    assert replay.fallbacks == 0
    # the unconstrained log-probs of the same tokens are far off: the replay uses the masks
    assert (plain - batch.engine_logprobs).abs()[sampled].max() > 0.5
    # tokens the grammar forced (one allowed token) are exactly 0 under the replay
    forced = sampled & (batch.engine_logprobs == 0)
    assert forced.any() and (replayed[forced] == 0).all()


def test_fill_logprobs_gap_is_zero_with_replay_and_not_without(chat, trajectories):
    records = _records(trajectories)
    gaps = {}
    for replay in (ConstraintReplay(chat.tokenizer), None):
        batch = build_batch(records, [0.5, -0.5, 1.0, -1.0], pad_token_id=chat.tokenizer.pad_token_id)
        # two PPO epochs: the old log-probs are recomputed in their own pass, which reports the gap
        settings = UpdateSettings(loss=LossConfig(beta=0.0, ppo_epochs=2), temperature=TEMPERATURE,
                                  micro_batch_size=2, replay=replay)
        metrics = fill_logprobs(chat.model, batch, settings, torch.device("cpu"))
        gaps[replay is not None] = metrics["engine_logprob_gap"]
        if replay is not None:  # every sampled token of these episodes is in a constrained segment
            assert metrics["constrained_tokens"] == sum(len(t.completion_ids) for rec in records for t in rec)
    assert gaps[True] < 1e-4 < 0.1 < gaps[False]


def test_replayed_logprobs_carry_gradients_to_the_policy(chat, trajectories):
    records = _records(trajectories)[:2]
    batch = build_batch(records, [1.0, -1.0], pad_token_id=chat.tokenizer.pad_token_id)
    chat.model.zero_grad(set_to_none=True)
    lp = token_logprobs(chat.model, batch.input_ids, batch.attention_mask, temperature=TEMPERATURE,
                        segments=batch.segments, replay=ConstraintReplay(chat.tokenizer))
    (lp * batch.loss_mask).sum().backward()
    grads = [p.grad for p in chat.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    chat.model.zero_grad(set_to_none=True)


def test_segments_follow_rows_through_select(chat, trajectories):
    records = _records(trajectories)
    batch = build_batch(records, [1.0, 2.0, 3.0, 4.0], pad_token_id=chat.tokenizer.pad_token_id)
    sub = batch.select([2, 0])
    assert len(sub.segments) == sub.num_rows
    for r in range(sub.num_rows):
        for seg in sub.segments[r]:
            assert seg.start + seg.length <= int(sub.attention_mask[r].sum())
    rows = trajectory_rows(records[2])
    assert [len(r.segments) for r in rows] == [len(s) for s in sub.segments[: len(rows)]]


def test_a_completion_outside_its_grammar_falls_back_to_plain_logprobs(chat, caplog):
    tok = chat.tokenizer
    spec = {"grammar": action_grammar().to_json(), "eos_ids": [tok.eos_token_id], "max_new_tokens": None}
    prompt = tok.encode("Design a workflow.", add_special_tokens=False)
    bad = tok.encode("hello there", add_special_tokens=False)  # not an action
    ids = torch.tensor([prompt + bad])
    replay = ConstraintReplay(tok)
    with torch.no_grad():
        replayed = token_logprobs(chat.model, ids, torch.ones_like(ids), segments=[[Segment(len(prompt), len(bad),
                                                                                               spec)]],
                                  replay=replay)
        plain = token_logprobs(chat.model, ids, torch.ones_like(ids))
    assert replay.fallbacks == 1
    assert torch.equal(replayed, plain) and torch.isfinite(replayed).all()
    # a path that left its grammar is reported as such, never as a dead end of the grammar
    assert "leaves its recorded grammar" in caplog.text and "dead end" not in caplog.text


def test_automata_are_cached_per_grammar(chat):
    replay = ConstraintReplay(chat.tokenizer, cache_size=2)
    a = {"grammar": action_grammar().to_json(), "eos_ids": [chat.tokenizer.eos_token_id], "max_new_tokens": 8}
    assert replay.automaton(a) is replay.automaton(dict(a, max_new_tokens=20))  # same grammar and ends
    b = dict(a, eos_ids=[chat.tokenizer.eos_token_id, 0])
    assert replay.automaton(b) is not replay.automaton(a)


def test_a_constrained_training_step_trains_the_sampled_distribution(tmp_path):
    """One real CWRPO step (LoRA, KL on) with constrained rollouts: the recomputed behaviour
    log-probs equal the sampler's (gap ~0); with the replay off they do not."""
    from flowsteer.testing.tiny import save_tiny_model
    from flowsteer.training import CWRPOTrainer
    from flowsteer.training.config import load_config

    base = save_tiny_model(tmp_path / "base", seed=0)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
max_steps: 1
seed: 5
model: {{name_or_path: "{base}", device: cpu}}
lora: {{r: 4, alpha: 8}}
loss: {{beta: 0.01}}
rollout:
  tasks_per_step: 1
  group_size: 2
director:
  max_turns: 2
  temperature: 0.9
  top_p: 1.0
  max_action_tokens: 40
  context_budget: 2560
  constrain: true
  constrain_options: {{set_prompt: false, node_actions: false, max_list: 2, think_tokens: 4}}
  max_prompt_tokens: 8
  repair_attempts: 0
data: {{datasets: [gsm_synthetic], limit: 4}}
logging: {{run_dir: "{tmp_path / 'run'}", save_every: 0, progress: false}}
""")
    gaps = {}
    for replay in (True, False):
        cfg = load_config(config, overrides={"loss.replay_constraint": replay})
        metrics = CWRPOTrainer.from_config(cfg).train_step()
        gaps[replay] = metrics["engine_logprob_gap"]
        assert metrics["valid_action_rate"] == 1.0
        if replay:
            assert metrics["constrained_tokens"] > 0 and metrics["constraint_replay_fallbacks"] == 0
            assert all(v == v for v in metrics.values())  # no NaN (KL and ratio on masked rows)
    assert gaps[True] < 1e-3 < 0.05 < gaps[False]


def test_a_single_on_policy_update_reuses_its_forward_pass_and_matches_the_recomputed_one(chat, trajectories):
    # one epoch, one minibatch: no separate old-log-prob pass, the same gradients and the same gap
    records = _records(trajectories)
    replay = ConstraintReplay(chat.tokenizer)
    results = {}
    for epochs in (1, 2):
        batch = build_batch(records, [0.5, -0.5, 1.0, -1.0], pad_token_id=chat.tokenizer.pad_token_id)
        settings = UpdateSettings(loss=LossConfig(beta=0.0, ppo_epochs=epochs), temperature=TEMPERATURE,
                                  micro_batch_size=2, replay=replay)
        filled = fill_logprobs(chat.model, batch, settings, torch.device("cpu"))
        assert (batch.old_logprobs is None) is (epochs == 1)
        chat.model.zero_grad(set_to_none=True)
        metrics = accumulate_gradients(chat.model, batch, list(range(batch.num_seqs)), settings, torch.device("cpu"))
        grads = [p.grad.detach().clone() for p in chat.model.parameters() if p.grad is not None]
        chat.model.zero_grad(set_to_none=True)
        results[epochs] = (grads, {**filled, **metrics})
    (one, m1), (two, m2) = results[1], results[2]
    assert one and len(one) == len(two)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(one, two, strict=True))
    assert m1["engine_logprob_gap"] == pytest.approx(m2["engine_logprob_gap"], abs=1e-5)
    assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-6)
