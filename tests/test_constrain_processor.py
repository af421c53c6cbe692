"""The logits processor on a tiny random model: every sample a valid action; log-prob replay is exact."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from flowsteer.canvas import Canvas, CanvasConfig, parse_action  # noqa: E402
from flowsteer.canvas.actions import Finish  # noqa: E402
from flowsteer.constrain import (  # noqa: E402
    ActionGrammar,
    GrammarOptions,
    GrammarProcessorFactory,
    TokenAutomaton,
    action_constraint,
    action_grammar,
    allowed_masks,
    constrained_logprobs,
)
from flowsteer.errors import ParseFailure  # noqa: E402
from flowsteer.operators.registry import default_registry  # noqa: E402
from flowsteer.tasks import Task  # noqa: E402
from flowsteer.testing import SimulatedExecutor  # noqa: E402
from flowsteer.workflow.dsl import parse  # noqa: E402

MESSAGES = [SystemMessage("You are the Flow-Director."), HumanMessage("Design a workflow: what is 2 + 3?")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat():
    from flowsteer.testing.tiny import tiny_chat_model

    return tiny_chat_model(seed=1, max_new_tokens=160, max_batch_size=50, batch_wait_s=0.05)


@pytest.fixture(scope="module")
def canvas():
    c = Canvas(SimulatedExecutor(), config=CanvasConfig(execute_each_step=False))
    c.reset(Task("What is 2 + 3?"))
    for text in ("<action>add</action><operator>Plan</operator>", "Plan the solution.",
                 "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
                 "Write code.", "Solve it directly."):
        assert c.step(text)[2].accepted
    return c


def _accepted_on_copy(canvas: Canvas, text: str) -> bool:
    probe = Canvas(SimulatedExecutor(), config=CanvasConfig(execute_each_step=False))
    probe.reset(canvas.task)
    probe._workflow = canvas.workflow  # noqa: SLF001 - same starting state
    return probe.step(text)[2].accepted


def test_processor_leaves_exactly_the_allowed_tokens(chat):
    automaton = TokenAutomaton(action_grammar(), chat.tokenizer)
    proc = GrammarProcessorFactory(action_grammar(), chat.tokenizer)([1, 2, 3])
    scores = torch.zeros(1, len(chat.tokenizer) + 7)  # the model's vocabulary may be padded
    out = proc(torch.tensor([[1, 2, 3]]), scores)
    finite = set(torch.nonzero(torch.isfinite(out[0])).view(-1).tolist())
    assert finite == set(automaton.allowed(automaton.start()).tokens)
    ids = chat.tokenizer.encode("<action>finish</action>", add_special_tokens=False)
    out = proc(torch.tensor([[1, 2, 3, *ids]]), scores)
    assert torch.isfinite(out[0, chat.tokenizer.eos_token_id])


def test_200_constrained_samples_are_valid_actions_the_canvas_accepts(chat, canvas):
    constraint = action_constraint(think_tokens=4)
    kwargs = constraint(canvas, canvas.registry, chat)
    assert set(kwargs) == {"logits_processor_factory", "flowsteer_constraint"}

    async def sample(seeds):  # concurrent calls share model batches (different seeds per row)
        return await asyncio.gather(*(chat.ainvoke(MESSAGES, temperature=1.0, seed=s, **kwargs) for s in seeds))

    outputs = []
    for start in range(0, 200, 50):
        outputs += asyncio.run(sample(range(start, start + 50)))
    kinds = set()
    for reply in outputs:
        action = parse_action(reply.content, canvas.registry, lenient=False)
        assert not isinstance(action, ParseFailure), reply.content
        assert isinstance(action, Finish) or _accepted_on_copy(canvas, reply.content), reply.content
        assert reply.response_metadata["finish_reason"] == "stop"
        kinds.add(type(action).__name__)
    assert len(kinds) >= 4  # the constraint does not collapse the model onto one action


def test_logprob_replay_equals_sampling_time_logprobs(chat, canvas):
    grammar = action_grammar(canvas.registry, canvas.workflow, GrammarOptions(think_tokens=10))
    budget = 60
    factory = GrammarProcessorFactory(grammar, chat.tokenizer, max_new_tokens=budget)
    for seed, (temperature, top_p) in enumerate([(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)]):
        reply = chat.invoke(MESSAGES, temperature=temperature, top_p=top_p, seed=seed, max_new_tokens=budget,
                            logits_processor_factory=factory)
        record = reply.response_metadata["flowsteer_tokens"]
        prompt, completion = record["prompt_ids"], record["completion_ids"]
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logits = chat.model(input_ids=ids).logits[0, len(prompt) - 1 : -1]  # [T, V]
        replayed = constrained_logprobs(logits, completion, factory.automaton, temperature=temperature,
                                        top_p=top_p, max_new_tokens=budget)
        assert torch.allclose(replayed, torch.tensor(record["logprobs"]), atol=2e-4), (temperature, top_p)
        # the unconstrained log-probs differ: the replay really uses the masks
        plain = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(completion)[:, None]).view(-1)
        assert (replayed - plain).abs().max() > 1e-3
        masks = allowed_masks(factory.automaton, completion, logits.shape[-1], max_new_tokens=budget)
        explicit = constrained_logprobs(logits, completion, masks=masks, temperature=temperature, top_p=top_p)
        assert torch.allclose(explicit, replayed)


def test_replay_is_differentiable(chat):
    grammar = action_grammar()
    automaton = TokenAutomaton(grammar, chat.tokenizer)
    completion = chat.tokenizer.encode("<action>finish</action>", add_special_tokens=False)
    completion.append(chat.tokenizer.eos_token_id)
    logits = torch.randn(len(completion), len(chat.tokenizer), requires_grad=True)
    lp = constrained_logprobs(logits, completion, automaton)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and logits.grad is not None
    assert lp[-1] == 0.0  # eos is the only option once the action is complete


def test_tight_budget_still_yields_a_complete_action(chat):
    grammar = action_grammar(workflow=parse("Plan -> Custom", default_registry()),
                             options=GrammarOptions(think_tokens=64))
    factory = GrammarProcessorFactory(grammar, chat.tokenizer, max_new_tokens=24)
    for seed in range(10):
        reply = chat.invoke(MESSAGES, temperature=1.0, seed=seed, max_new_tokens=24,
                            logits_processor_factory=factory)
        assert not isinstance(parse_action(reply.content, default_registry(), lenient=False), ParseFailure)
        assert reply.response_metadata["finish_reason"] == "stop"


def _observation(state: str):
    """A hand-built observation of an empty canvas (no workflow attached: read from its DSL)."""
    from flowsteer.canvas.env import CanvasState, Observation

    return Observation("", CanvasState(state), 1, 10, "")


def test_prompt_turns_are_free_text_without_tags(chat):
    view = _observation("awaiting_prompt")
    kwargs = action_constraint(prompt_tokens=30)(view, default_registry(), chat)
    for seed in range(5):
        reply = chat.invoke(MESSAGES, temperature=1.0, seed=seed, **kwargs)
        assert "<" not in reply.content and len(reply.response_metadata["flowsteer_tokens"]["completion_ids"]) <= 31


def test_openai_style_models_get_a_structured_outputs_regex():
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="director", api_key="x", base_url="http://localhost:1/v1")
    kwargs = action_constraint()(_observation("building"),
                                 default_registry(), model)
    assert set(kwargs) == {"extra_body", "flowsteer_constraint"}
    assert "regex" in kwargs["extra_body"]["structured_outputs"]
    # the record names the same grammar, and no end tokens (the trainer's tokenizer decides)
    record = kwargs["flowsteer_constraint"]
    assert record["eos_ids"] is None and record["max_new_tokens"] is None
    assert ActionGrammar.from_json(record["grammar"]) == action_constraint().grammar(
        _observation("building"), default_registry())


@pytest.mark.slow
def test_embedded_smollm2_constrained_first_moves_are_valid():
    from flowsteer.constrain import check_canonical
    from flowsteer.errors import MissingExtraError
    from flowsteer.models.embedded import locate_embedded_gguf
    from flowsteer.models.specs import load_chat_model

    try:
        locate_embedded_gguf()
    except MissingExtraError as exc:
        pytest.skip(str(exc))

    model = load_chat_model("embedded")
    grammar = action_grammar()
    assert check_canonical(grammar, model.tokenizer, samples=100) == []
    view = _observation("building")
    kwargs = action_constraint(max_new_tokens=48)(view, default_registry(), model)
    valid = 0
    for seed in range(20):
        reply = model.invoke(MESSAGES, temperature=0.7, top_p=0.95, seed=seed, max_new_tokens=48, **kwargs)
        valid += not isinstance(parse_action(reply.content, default_registry(), lenient=False), ParseFailure)
    assert valid == 20


def test_a_budget_no_action_fits_is_refused_with_the_fix(chat):
    from flowsteer.constrain import GrammarProcessorFactory, action_grammar
    from flowsteer.errors import UserError

    with pytest.raises(UserError, match=r"max_new_tokens=4 cannot hold any action.*shortest takes \d+ tokens"):
        GrammarProcessorFactory(action_grammar(), chat.tokenizer, max_new_tokens=4)
    GrammarProcessorFactory(action_grammar(), chat.tokenizer, max_new_tokens=40)
