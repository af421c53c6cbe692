"""LocalChatModel on a tiny random model: exact token records, batching, stop strings, hooks."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402

from flowsteer.models._sampling import _top_p_filter  # noqa: E402
from flowsteer.models.local import LocalChatModel  # noqa: E402
from flowsteer.testing.tiny import build_tiny_model, build_tiny_tokenizer  # noqa: E402

PROMPTS = ["a", "hello there friend, how are you today?", "12+30=", "Natalia sold clips in April and May."]


@pytest.fixture(scope="module")
def tiny():
    tok = build_tiny_tokenizer()
    return build_tiny_model(tok, seed=1), tok


@pytest.fixture
def lm(tiny):
    model, tok = tiny
    return LocalChatModel(model=model, tokenizer=tok, max_new_tokens=12)


def _recompute(model, tokens, temperature=None, top_p=1.0):
    ids = torch.tensor([tokens["prompt_ids"] + tokens["completion_ids"]])
    with torch.no_grad():
        logits = model(ids).logits[0].float()  # [T, V]
    if temperature:
        logits = logits / temperature
        if top_p < 1.0:
            logits = _top_p_filter(logits, top_p)
    logp = torch.log_softmax(logits, -1)
    start = len(tokens["prompt_ids"]) - 1
    return [float(logp[start + i, t]) for i, t in enumerate(tokens["completion_ids"])]


def test_prompt_ids_follow_the_chat_template_exactly(lm, tiny):
    _, tok = tiny
    messages = [SystemMessage("be brief"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("12+30?")]
    reply = lm.invoke(messages)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}, {"role": "user", "content": "12+30?"}],
        tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    tokens = reply.response_metadata["flowsteer_tokens"]
    assert tokens["prompt_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert reply.usage_metadata == {"input_tokens": len(tokens["prompt_ids"]),
                                    "output_tokens": len(tokens["completion_ids"]),
                                    "total_tokens": len(tokens["prompt_ids"]) + len(tokens["completion_ids"])}


def test_greedy_logprobs_match_a_forward_pass(lm, tiny):
    model, _ = tiny
    tokens = lm.invoke("hello 12+30").response_metadata["flowsteer_tokens"]
    assert len(tokens["completion_ids"]) == len(tokens["logprobs"]) > 0
    recomputed = _recompute(model, tokens)
    assert max(abs(a - b) for a, b in zip(recomputed, tokens["logprobs"], strict=True)) < 1e-4


def test_sampled_logprobs_are_those_of_the_processed_distribution(lm, tiny):
    model, _ = tiny
    reply = lm.invoke("hello 12+30", temperature=0.7, top_p=0.9, seed=3, max_new_tokens=16)
    tokens = reply.response_metadata["flowsteer_tokens"]
    recomputed = _recompute(model, tokens, temperature=0.7, top_p=0.9)
    assert max(abs(a - b) for a, b in zip(recomputed, tokens["logprobs"], strict=True)) < 1e-4
    # and not those of the raw model distribution
    raw = _recompute(model, tokens)
    assert max(abs(a - b) for a, b in zip(raw, tokens["logprobs"], strict=True)) > 1e-3


def test_seed_makes_sampling_reproducible(lm):
    a = lm.invoke("hi", temperature=1.0, seed=7).response_metadata["flowsteer_tokens"]["completion_ids"]
    b = lm.invoke("hi", temperature=1.0, seed=7).response_metadata["flowsteer_tokens"]["completion_ids"]
    c = lm.invoke("hi", temperature=1.0, seed=8).response_metadata["flowsteer_tokens"]["completion_ids"]
    assert a == b and a != c


def _ids(reply):
    return reply.response_metadata["flowsteer_tokens"]["completion_ids"]


def test_batch_equals_one_by_one_under_greedy(lm):
    one_by_one = [_ids(lm.invoke(p)) for p in PROMPTS]
    assert len({tuple(x) for x in one_by_one}) > 1  # the outputs really differ per prompt
    batched = lm.batch(PROMPTS)
    assert [_ids(r) for r in batched] == one_by_one
    assert lm.batch_sizes[-1] == len(PROMPTS)


async def test_abatch_and_concurrent_ainvoke_share_batches(lm):
    one_by_one = [_ids(lm.invoke(p)) for p in PROMPTS]
    replies = await lm.abatch(PROMPTS)
    assert [_ids(r) for r in replies] == one_by_one
    assert lm.batch_sizes[-1] == len(PROMPTS)
    replies = await asyncio.gather(*(lm.ainvoke(p) for p in PROMPTS))
    assert [_ids(r) for r in replies] == one_by_one


def test_batches_are_capped(tiny):
    model, tok = tiny
    lm = LocalChatModel(model=model, tokenizer=tok, max_new_tokens=3, max_batch_size=2)
    lm.batch(PROMPTS)
    assert max(lm.batch_sizes) == 2 and sum(lm.batch_sizes) == len(PROMPTS)


def test_stop_strings_cut_the_text(lm, tiny):
    model, tok = tiny
    full = lm.invoke("hello 12+30", max_new_tokens=20)
    text = full.content
    assert len(text) > 4
    stop = text[2:4]
    cut = lm.invoke("hello 12+30", max_new_tokens=20, stop=[stop])
    assert cut.content == text[: text.find(stop)]
    assert cut.response_metadata["finish_reason"] == "stop"
    # the completion ids are the tokens sampled, up to the one that completed the stop string
    ids = _ids(cut)
    assert ids == _ids(full)[: len(ids)] and stop in tok.decode(ids)


def test_logits_processor_factory_constrains_each_row(lm, tiny):
    _, tok = tiny
    allowed = tok("<action>", add_special_tokens=False)["input_ids"]
    calls = []

    def factory(prompt_ids, messages):
        calls.append((len(prompt_ids), messages[-1].content))

        def only_allowed(ids, scores):
            step = ids.shape[1] - len(prompt_ids)
            mask = torch.full_like(scores, float("-inf"))
            mask[:, allowed[step % len(allowed)]] = 0
            return scores + mask

        return only_allowed

    reply = lm.invoke("anything", logits_processor_factory=factory, max_new_tokens=len(allowed))
    tokens = reply.response_metadata["flowsteer_tokens"]
    assert tokens["completion_ids"] == allowed
    assert all(abs(lp) < 1e-6 for lp in tokens["logprobs"])  # forced tokens: log-prob 0
    assert calls == [(len(tokens["prompt_ids"]), "anything")]


def test_share_uses_one_worker_with_other_defaults(lm):
    other = lm.share(max_new_tokens=2)
    assert other.engine is lm.engine and other.model is lm.model
    assert len(_ids(other.invoke("hi"))) <= 2


def test_qwen2_architecture_works():
    tok = build_tiny_tokenizer()
    lm = LocalChatModel(model=build_tiny_model(tok, arch="qwen2"), tokenizer=tok, max_new_tokens=5)
    assert len(_ids(lm.invoke("hi"))) <= 5


def test_errors_reach_the_caller(lm):
    def broken(prompt_ids, messages):
        raise RuntimeError("processor exploded")

    with pytest.raises(RuntimeError, match="processor exploded"):
        lm.invoke("hi", logits_processor_factory=broken)
    assert lm.invoke("hi").content is not None  # the worker keeps serving


def test_prefix_cache_reuses_a_shared_prompt_prefix(tiny):
    model, tok = tiny
    system = SystemMessage("You are the Flow-Director. " * 20)
    fresh = LocalChatModel(model=model, tokenizer=tok, max_new_tokens=10)
    cached = LocalChatModel(model=model, tokenizer=tok, max_new_tokens=10, prefix_cache_entries=2)
    for question in ("first task 12+30", "second task Natalia", "third task"):
        a = fresh.invoke([system, HumanMessage(question)], temperature=0.8, seed=1)
        b = cached.invoke([system, HumanMessage(question)], temperature=0.8, seed=1)
        ta, tb = a.response_metadata["flowsteer_tokens"], b.response_metadata["flowsteer_tokens"]
        assert ta["completion_ids"] == tb["completion_ids"]
        assert max(abs(x - y) for x, y in zip(ta["logprobs"], tb["logprobs"], strict=True)) < 1e-4
    assert cached.engine.prefix_cache.hits == 2 and fresh.engine.prefix_cache.hits == 0
    cached.engine.prefix_cache.clear()
    cached.invoke([system, HumanMessage("fourth")])
    assert cached.engine.prefix_cache.hits == 2
