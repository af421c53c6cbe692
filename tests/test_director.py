"""The director loop on shipped fakes: full episodes, repair, think blocks, budget, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import BaseMessage

from flowsteer.canvas import AddConditional, AddOperator, AddParallel, Canvas, CanvasConfig, Finish
from flowsteer.director import Director, DirectorConfig, TokenRecord, Trajectory
from flowsteer.director._calls import split_think
from flowsteer.director.context import BudgetParts, fit_messages, token_counter, truncate_middle
from flowsteer.director.prompts import example_actions, operator_table, system_prompt
from flowsteer.errors import UserError
from flowsteer.operators import default_registry
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

QUESTION = "Natalia sold 48 clips in April and half as many in May. How many clips in total?"

GOOD_EPISODE = [
    "<action>add</action><operator>Plan</operator>", "Identify the quantities and the relation.",
    "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
    "Compute it with Python.", "Reason step by step.",
    "<action>add</action><operator>ScEnsemble</operator>", "Pick the majority answer.",
    "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
    "<true>Revise</true><false>done</false>",
    "Re-solve and compare.", "Fix the error the check found.",
    "<action>add</action><operator>Format</operator>", "Output only the number.",
    "<action>finish</action>",
]


def _task() -> Task:
    return Task(QUESTION, answer="72")


def _executor() -> SimulatedExecutor:
    return SimulatedExecutor({QUESTION: "72"}, skill=1.0)


def test_full_episode_finishes_with_a_structured_workflow():
    model = ScriptedChatModel(GOOD_EPISODE)
    trajectory = Director(model).run(_task(), _executor())
    assert trajectory.stop_reason == "finish" and trajectory.finished
    assert trajectory.workflow.dsl == "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"
    assert trajectory.answer == "72"
    assert trajectory.fallback is None
    assert [t.index for t in trajectory.turns] == list(range(1, 14))
    assert isinstance(trajectory.turns[0].action, AddOperator)
    assert isinstance(trajectory.turns[2].action, AddParallel)
    assert isinstance(trajectory.turns[7].action, AddConditional)
    assert isinstance(trajectory.turns[-1].action, Finish)
    prompts = [t for t in trajectory.turns if t.kind == "prompt"]
    assert len(prompts) == 7 and all(t.state == "awaiting_prompt" and t.accepted for t in prompts)
    # each call's record holds exactly the messages the model saw
    for record, call in zip(trajectory.turns, model.calls, strict=True):
        assert [m["content"] for m in record.messages] == [m.content for m in call]
    assert trajectory.usage.calls == 13 and trajectory.usage.input_tokens > 0
    assert trajectory.executor_usage.calls > 0
    assert trajectory.turns[-1].feedback.startswith("<feedback>")
    assert trajectory.valid_action_rate == 1.0
    assert trajectory.to_dict()["workflow"] == trajectory.workflow.dsl


def test_every_building_turn_shows_the_canvas_state_exactly_once():
    model = ScriptedChatModel(GOOD_EPISODE)
    trajectory = Director(model).run(_task(), _executor())
    building = [t for t in trajectory.turns if t.kind == "action"]
    assert len(building) >= 3
    for record in building:
        user = record.messages[-1]["content"]
        # the DSL, the node list and the round come from the canvas feedback block only
        for marker in ("[Current DSL]:", "[Nodes]:", "[Round]:"):
            assert user.count(marker) == 1, (marker, user)
        assert "Workflow:" not in user and "Nodes:" not in user.replace("[Nodes]:", "")
    last = building[-1].messages[-1]["content"]
    assert trajectory.turns[-2].feedback.split("[Current DSL]: ")[1].split("\n")[0] in last
    # the worked example reads like a real first turn: the same empty-canvas block
    example_user = building[0].messages[1]["content"]
    first_user = building[0].messages[-1]["content"]
    assert example_user.split("## Canvas")[1] == first_user.split("## Canvas")[1]


def test_prompt_turns_ask_for_the_node_prompt_only():
    model = ScriptedChatModel(GOOD_EPISODE[:2])
    canvas = Canvas(_executor(), config=CanvasConfig(max_turns=2))
    Director(model).run(_task(), canvas)
    system, user = model.calls[1]
    assert "prompt" in system.content.lower() and "<action>" not in system.content
    assert "node_1: Plan" in user.content and QUESTION in user.content


def test_parse_failure_then_repair_records_both_calls():
    replies = ["Let me think about how to solve this problem with some prose.",
               "<action>add</action><operator>Programmer</operator>", "Compute 48 + 24."]
    model = ScriptedChatModel(replies)
    trajectory = Director(model, config=DirectorConfig(max_turns=2)).run(_task(), _executor())
    first, repair, prompt = trajectory.turns
    assert (first.kind, first.sent, first.action) == ("action", False, None)
    assert first.parse_failure is not None and first.feedback == ""
    assert (repair.kind, repair.sent, repair.accepted) == ("repair", True, True)
    assert repair.index == first.index == 1
    assert repair.action == AddOperator("Programmer")
    # the repair call saw the failed output and an instruction naming the failure
    assert repair.messages[-2] == {"role": "assistant", "content": replies[0]}
    assert "no valid action" in repair.messages[-1]["content"]
    assert prompt.kind == "prompt" and trajectory.workflow.dsl == "Programmer"


def test_repair_is_bounded_and_the_last_attempt_goes_to_the_canvas():
    model = ScriptedChatModel([], default="I refuse to use XML.")
    config = DirectorConfig(max_turns=3, repair_attempts=2)
    trajectory = Director(model, config=config).run(_task(), _executor())
    assert len(model.calls) == 9  # 3 turns x (1 + 2 repairs)
    assert [t.sent for t in trajectory.turns] == [False, False, True] * 3
    assert all(not t.accepted for t in trajectory.turns)
    assert trajectory.stop_reason == "max_turns" and trajectory.workflow.is_empty
    assert trajectory.valid_action_rate == 0.0


def test_no_repair_when_disabled():
    model = ScriptedChatModel([], default="prose")
    Director(model, config=DirectorConfig(max_turns=2, repair_attempts=0)).run(_task(), _executor())
    assert len(model.calls) == 2


def test_think_blocks_are_kept_out_of_the_canvas_and_recorded():
    replies = ["<think>A planner first, then a solver.</think>\n<action>add</action><operator>Plan</operator>",
               "<think>short</think>List the quantities."]
    model = ScriptedChatModel(replies)
    canvas = Canvas(_executor(), config=CanvasConfig(max_turns=2))
    trajectory = Director(model).run(_task(), canvas)
    action, prompt = trajectory.turns
    assert action.thinking == "A planner first, then a solver." and action.accepted
    assert prompt.thinking == "short"
    assert canvas.workflow.operator_nodes()[0].prompt == "List the quantities."
    assert "planner" not in canvas.history[0].message
    # usage counts the thinking tokens (the whole raw output)
    assert action.usage.output_tokens >= len(replies[0]) // 4


def test_unterminated_think_is_a_think_only_failure():
    model = ScriptedChatModel(["<think>I keep thinking and never", "<action>add</action><operator>Plan</operator>"])
    trajectory = Director(model, config=DirectorConfig(max_turns=1)).run(_task(), _executor())
    assert "think-only" in trajectory.turns[0].parse_failure.message
    assert trajectory.turns[1].action == AddOperator("Plan")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>b", ("a", "b", False)),
        ("a</think>b", ("a", "b", False)),
        ("x<think>never closed", ("never closed", "x", True)),
        ("no thinking", (None, "no thinking", False)),
        ("<THINK> A </THINK> B ", ("A", "B", False)),
    ],
)
def test_split_think(text, expected):
    assert split_think(text) == expected


def test_context_budget_holds_over_a_long_episode_with_huge_feedback():
    big = "x" * 40_000

    class HugeFeedbackCanvas(Canvas):
        async def astep(self, text):
            obs, done, info = await super().astep(text)
            return type(obs)(obs.text + big, obs.state, obs.turn, obs.max_turns, obs.dsl,
                             obs.prompt_request), done, info

    budget, max_action = 1500, 64
    config = DirectorConfig(max_turns=20, context_budget=budget, max_action_tokens=max_action,
                            max_prompt_tokens=32, max_repair_tokens=32, feedback_chars=100_000)
    add = "<action>add</action><operator>Custom</operator>"
    model = ScriptedChatModel([], default=lambda msgs: "Solve it." if "Write the prompt" in msgs[-1].content
                              else add)
    canvas = HugeFeedbackCanvas(_executor(), config=CanvasConfig(max_turns=20, max_nodes=40))
    director = Director(model, config=config)
    trajectory = director.run(Task(QUESTION + " " + "very long details " * 300), canvas)
    assert len({t.index for t in trajectory.turns}) == 20
    count = token_counter(model)
    for record in trajectory.turns:
        limit = max_action if record.kind == "action" else 32
        assert record.context_tokens == count(record.messages)
        assert record.context_tokens + limit <= budget
    assert 0 < trajectory.max_context_tokens <= budget
    late = [t for t in trajectory.turns if t.kind == "action"][-1].messages[-1]["content"]
    assert "earlier turns not shown" in late and "[...]" in late


def test_fit_messages_compresses_history_then_feedback_then_task():
    def render(p):
        history = "\n".join(p.history)
        return [{"role": "user", "content": f"{p.question}\n{history}\n{p.omitted}\n{p.feedback}"}]

    count = token_counter(object())
    parts = BudgetParts(history=[f"turn {i} " * 10 for i in range(40)], feedback="f" * 3000,
                        question="q" * 3000)
    messages, used = fit_messages(parts, render, count, 1200)
    assert used <= 1200 and parts.omitted > 0 and parts.question == "q" * 3000
    messages, used = fit_messages(parts, render, count, 300)
    assert used <= 300 and not parts.history and len(parts.question) < 3000
    assert truncate_middle("abcdefghij" * 10, 30).count("[...]") == 1
    assert len(truncate_middle("abcdefghij" * 10, 30)) == 30


def test_token_counter_uses_the_model_tokenizer():
    from flowsteer.testing.tiny import tiny_chat_model

    model = tiny_chat_model()
    messages = [{"role": "user", "content": "hello there"}]
    from langchain_core.messages import HumanMessage

    assert token_counter(model)(messages) == len(model.encode_messages([HumanMessage("hello there")]))


async def test_arun_many_respects_the_concurrency_limit():
    active = 0
    peak = 0

    class Slow(ScriptedChatModel):
        async def _agenerate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            try:
                return await super()._agenerate(messages, stop, run_manager, **kwargs)
            finally:
                active -= 1

    model = Slow([], default=lambda msgs: "Do it." if "Write the prompt" in msgs[-1].content
                 else "<action>add</action><operator>AnswerGenerate</operator>")
    director = Director(model, config=DirectorConfig(max_turns=2))
    tasks = [Task(f"What is {i} + {i}?") for i in range(9)]
    results = await director.arun_many(tasks, lambda: Canvas(_executor(), config=CanvasConfig(max_turns=2)),
                                       concurrency=3)
    assert peak == 3
    assert [r.task.question for r in results] == [t.question for t in tasks]
    assert all(r.workflow.dsl == "AnswerGenerate" for r in results)


async def test_arun_many_accepts_a_shared_executor():
    model = ScriptedChatModel([], default=lambda msgs: "Do it." if "Write the prompt" in msgs[-1].content
                              else "<action>add</action><operator>Custom</operator>")
    results = await Director(model, config=DirectorConfig(max_turns=2)).arun_many(
        ["What is 1 + 1?", "What is 2 + 2?"], _executor(), concurrency=2)
    assert len(results) == 2 and all(isinstance(r, Trajectory) for r in results)


def test_run_inside_an_event_loop_points_to_arun():
    async def inner():
        Director(ScriptedChatModel(["x"])).run(_task(), _executor())

    with pytest.raises(UserError, match="arun"):
        asyncio.run(inner())


def test_fallback_runs_a_template_when_nothing_was_built():
    from flowsteer.fallback import FALLBACK_TEMPLATES

    model = ScriptedChatModel([], default="no idea")
    config = DirectorConfig(max_turns=2, repair_attempts=0, fallback=True)
    trajectory = Director(model, config=config).run(_task(), _executor())
    assert trajectory.designed is not None and trajectory.designed.is_empty
    assert trajectory.fallback.startswith("math-default: ") and "canvas is empty" in trajectory.fallback
    assert trajectory.workflow.dsl == FALLBACK_TEMPLATES["math-default"]
    assert trajectory.answer == "72"
    assert trajectory.executor_usage.calls > 0


def test_fallback_templates_from_the_config():
    model = ScriptedChatModel([], default="no idea")
    config = DirectorConfig(max_turns=1, repair_attempts=0, fallback=True,
                            fallback_templates={"math": "Custom -> Verify ? Revise : done -> Format"})
    trajectory = Director(model, config=config).run(_task(), _executor())
    assert trajectory.workflow.dsl == "Custom -> Verify ? Revise : done -> Format"


def test_finished_episode_keeps_its_own_workflow_with_fallback_on():
    trajectory = Director(ScriptedChatModel(GOOD_EPISODE), config=DirectorConfig(fallback=True)).run(
        _task(), _executor())
    assert trajectory.fallback is None and trajectory.workflow == trajectory.designed


def test_no_fallback_by_default():
    model = ScriptedChatModel([], default="no idea")
    trajectory = Director(model, config=DirectorConfig(max_turns=1, repair_attempts=0)).run(_task(), _executor())
    assert trajectory.fallback is None and trajectory.answer == "" and trajectory.execution is None


def test_the_canvas_turn_limit_ends_the_episode_and_runs_the_pending_workflow():
    # One enforcer: the canvas. A canvas passed in keeps its own limit (2) whatever the director's
    # config says; the canvases a director builds take the director's (next test file: max_turns=2).
    model = ScriptedChatModel(GOOD_EPISODE[:2])
    canvas = Canvas(_executor(), config=CanvasConfig(max_turns=2))
    trajectory = Director(model, config=DirectorConfig(max_turns=20)).run(_task(), canvas)
    assert trajectory.stop_reason == "max_turns" and len(trajectory.turns) == 2
    assert trajectory.execution is not None and trajectory.workflow.dsl == "Plan"
    built = Director(ScriptedChatModel(GOOD_EPISODE[:2]), config=DirectorConfig(max_turns=2)).run(_task(), _executor())
    assert built.stop_reason == "max_turns" and built.workflow.dsl == "Plan"


def test_token_records_are_copied_from_the_model():
    from flowsteer.testing.tiny import tiny_chat_model

    model = tiny_chat_model(max_new_tokens=8)
    trajectory = Director(model, config=DirectorConfig(max_turns=2, repair_attempts=0, max_action_tokens=8,
                                                       max_prompt_tokens=8)).run(_task(), _executor())
    for record in trajectory.turns:
        assert isinstance(record.tokens, TokenRecord)
        assert len(record.tokens.completion_ids) == len(record.tokens.logprobs) <= 8
        assert len(record.tokens.prompt_ids) == record.context_tokens
        assert record.usage.input_tokens == record.context_tokens


def test_constraint_hook_adds_call_kwargs():
    seen = []

    def constraint(canvas, registry, model):
        assert isinstance(canvas, Canvas) and registry is default_registry()
        seen.append(canvas.state.value)
        return {"marker": canvas.turn}

    class Recording(ScriptedChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            seen.append(kwargs.get("marker"))
            return super()._generate(messages, stop, run_manager, **kwargs)

        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            seen.append(kwargs.get("marker"))
            return await super()._agenerate(messages, stop, run_manager, **kwargs)

    model = Recording(GOOD_EPISODE[:2])
    Director(model, config=DirectorConfig(max_turns=2, constraint=constraint)).run(_task(), _executor())
    assert seen == ["building", 0, "awaiting_prompt", 1]


def test_system_prompt_comes_from_the_registry(toy_registry):
    from flowsteer.operators import OperatorSpec, Role

    registry = default_registry().copy()
    factory = registry.get("Custom").factory
    registry.register(OperatorSpec("UnitChecker", Role.CHECKING, "Checks physical units.", factory))
    text = system_prompt(registry, "math")
    assert "- UnitChecker (checking): Checks physical units." in text
    for name in registry.names():
        assert f"- {name} (" in text
    assert "<action>finish</action>" in text and "{" not in text
    assert "UnitChecker" in operator_table(registry)
    kinds = {type(a).__name__ for _, a in example_actions(registry)}
    assert len(kinds) == 8


def test_config_validation_names_the_fix():
    with pytest.raises(UserError, match="top_p"):
        DirectorConfig(top_p=0)
    with pytest.raises(UserError, match="context_budget"):
        DirectorConfig(context_budget=600, max_action_tokens=512)
    small = DirectorConfig.small_model(max_turns=6)
    assert small.max_action_tokens == 48 and small.max_turns == 6 and small.constraint is None
    constrained = DirectorConfig.small_model(constrained=True)
    assert constrained.constraint is not None and constrained.max_action_tokens == 64


def test_single_turn_baseline_parses_the_dsl():
    from flowsteer.director import arun_single_turn, design_once

    reply = "Here is my design:\n```\nPlan -> [Programmer, Custom] -> ScEnsemble -> Format\n```"
    design = design_once(ScriptedChatModel([reply]), _task())
    assert design.workflow is not None and design.failure is None
    assert design.workflow.dsl == "Plan -> [Programmer, Custom] -> ScEnsemble -> Format"
    bad = design_once(ScriptedChatModel(["I would plan, then solve."]), _task())
    assert bad.workflow is None and bad.failure is not None
    trajectory = asyncio.run(arun_single_turn(ScriptedChatModel([reply]), _task(), _executor()))
    assert trajectory.answer == "72" and trajectory.meta == {"mode": "single_turn"}
    # a parsable workflow that breaks a rule for this task is a failed design, not a crashed eval
    wrong = asyncio.run(arun_single_turn(ScriptedChatModel(["Programmer -> Test -> Format"]), _task(), _executor()))
    assert wrong.stop_reason == "invalid" and wrong.answer == "" and wrong.execution is None
    assert "Test works on code tasks" in wrong.error


# -- the CLI (models replaced by fakes; the real embedded run is the slow test and `make demo`) --------
@pytest.fixture
def fake_models(monkeypatch):
    import flowsteer.models.specs

    def load(director, executor, **kwargs):
        return ScriptedChatModel(GOOD_EPISODE), _executor()

    monkeypatch.setattr(flowsteer.models.specs, "load_chat_models", load)


def test_cli_run_shows_turns_workflow_mermaid_answer(fake_models, capsys):
    from flowsteer.cli import main

    assert main(["run", QUESTION, "--director", "openai:x", "--executor", "openai:y", "--max-turns", "20"]) == 0
    out = capsys.readouterr().out
    assert "t 1 action ok <action>add</action><operator>Plan</operator>" in out
    assert "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format" in out
    assert "flowchart" in out or "graph" in out  # the mermaid diagram
    assert "stop: finish" in out and "director tokens" in out
    assert "\n72\n" in out


def test_cli_run_json_prints_the_trajectory(fake_models, capsys):
    import json

    from flowsteer.cli import main

    assert main(["run", QUESTION, "--director", "openai:x", "--executor", "openai:y", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == "72" and data["stop_reason"] == "finish" and len(data["turns"]) == 13


def test_cli_design_prints_only_the_workflow(fake_models, capsys):
    from flowsteer.cli import main

    assert main(["design", QUESTION, "--director", "openai:x", "--executor", "openai:y"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def test_cli_reports_bad_specs_as_errors(capsys):
    from flowsteer.cli import main

    assert main(["run", "What is 1+1?", "--director", "gpt4"]) == 2
    assert "unknown model spec" in capsys.readouterr().err


def test_repair_calls_stay_within_the_budget():
    long_prose = "I would first think about the problem in a lot of detail. " * 200
    model = ScriptedChatModel([], default=long_prose)
    config = DirectorConfig(max_turns=3, context_budget=1600, max_action_tokens=64, max_repair_tokens=32,
                            max_prompt_tokens=32, feedback_chars=5000)
    trajectory = Director(model, config=config).run(Task(QUESTION + " more" * 400), _executor())
    repairs = [t for t in trajectory.turns if t.kind == "repair"]
    assert len(repairs) == 3
    for record in trajectory.turns:
        limit = 32 if record.kind == "repair" else 64
        assert record.context_tokens + limit <= 1600


# -- failing director calls and wrapped models ----------------------------------------------------------
def _raising_on(question_part: str, *, error: Exception | None = None) -> ScriptedChatModel:
    """Plays GOOD_EPISODE's policy, but raises on the second call of episodes whose task holds ``question_part``."""
    from director_scripts import policy_director

    policy = policy_director()
    seen: dict[str, int] = {}

    def reply(messages: list[BaseMessage]) -> str:
        text = "\n".join(str(m.content) for m in messages)
        key = next((q for q in ("What is 0", "What is 1", "What is 2", "What is 3") if q in text), "")
        seen[key] = seen.get(key, 0) + 1
        if question_part in text and seen[key] == 2:
            raise error or RuntimeError("server said 503")
        return str(policy.invoke(messages).content)

    return ScriptedChatModel([], default=reply)


async def test_a_failed_director_call_ends_only_its_episode_in_arun_many():
    tasks = [Task(f"What is {i} + 1?", answer=str(i + 1)) for i in range(4)]
    director = Director(_raising_on("What is 2 + 1?"), config=DirectorConfig(max_turns=20))
    results = await director.arun_many(tasks, SimulatedExecutor(skill=1.0), concurrency=2)
    assert [r.task.question for r in results] == [t.question for t in tasks]
    failed = results[2]
    assert failed.stop_reason == "error" and failed.error == "RuntimeError: server said 503"
    assert len(failed.turns) == 1 and failed.turns[0].accepted  # the turn before the failure is kept
    assert failed.to_dict()["error"] == "RuntimeError: server said 503"
    others = [r for i, r in enumerate(results) if i != 2]
    assert all(r.stop_reason == "finish" and r.error is None for r in others)


async def test_a_failed_director_call_raises_from_arun_and_on_request_from_arun_many():
    director = Director(_raising_on("What is 1 + 1?"), config=DirectorConfig(max_turns=20))
    with pytest.raises(RuntimeError, match="server said 503"):
        await director.arun(Task("What is 1 + 1?"), _executor())
    tasks = [Task(f"What is {i} + 1?") for i in range(4)]
    director = Director(_raising_on("What is 1 + 1?"), config=DirectorConfig(max_turns=20))
    with pytest.raises(RuntimeError, match="server said 503"):
        await director.arun_many(tasks, _executor(), concurrency=4, on_error="raise")


async def test_developer_errors_from_the_director_model_still_raise_in_arun_many():
    tasks = [Task(f"What is {i} + 1?") for i in range(3)]
    model = _raising_on("What is 0 + 1?", error=UserError("cannot reach the model server"))
    with pytest.raises(UserError, match="cannot reach"):
        await Director(model, config=DirectorConfig(max_turns=20)).arun_many(tasks, _executor(), concurrency=3)


def test_a_retry_wrapped_local_director_keeps_its_settings_tokenizer_and_grammar(monkeypatch):
    """with_retries hides the LocalChatModel's fields: token limit, sampling, tokenizer and the grammar
    constraint must still reach it."""
    from flowsteer.models.local import LocalChatModel
    from flowsteer.models.retry import with_retries
    from flowsteer.testing.tiny import tiny_chat_model

    local = tiny_chat_model()
    seen = []
    real_request = LocalChatModel._request

    def spy(self, messages, stop, kwargs):
        request = real_request(self, messages, stop, kwargs)
        seen.append(request)
        return request

    monkeypatch.setattr(LocalChatModel, "_request", spy)
    config = DirectorConfig.small_model(constrained=True, max_turns=2, temperature=0.3)
    director = Director(with_retries(local, attempts=2), config=config)
    trajectory = director.run(_task(), _executor())
    assert seen and trajectory.turns
    first = seen[0]
    assert first.params.max_new_tokens == 64 and first.params.temperature == 0.3
    assert first.factory is not None  # the action grammar, built for the wrapped model's tokenizer
    building = [t for t in trajectory.turns if t.state == "building"]
    assert building and all(t.action is not None for t in building)
    assert trajectory.turns[0].context_tokens == token_counter(local)(trajectory.turns[0].messages)


def test_episode_seconds_include_the_fallback_run():
    import time

    model = ScriptedChatModel([], default="no idea")
    config = DirectorConfig(max_turns=1, repair_attempts=0, fallback=True)
    started = time.perf_counter()
    trajectory = Director(model, config=config).run(_task(), SimulatedExecutor({QUESTION: "72"}, skill=1.0,
                                                                                latency=0.05))
    wall = time.perf_counter() - started
    assert trajectory.fallback is not None and trajectory.executor_usage.calls >= 6
    assert 0.25 <= trajectory.seconds <= wall  # >= 6 sequential-ish executor calls of 50 ms each


def _with_unit_checker():
    from flowsteer.operators import OperatorSpec, Role

    registry = default_registry().copy()
    registry.register(OperatorSpec("UnitChecker", Role.CHECKING, "Checks physical units. " * 20,
                                   registry.get("Custom").factory))
    return registry


def _needs(registry, model, config) -> dict[bool, int]:
    """Tokens the system prompt (full / compact) and a one-line turn take, plus the reply's reserve."""
    count = token_counter(model)
    turn = [{"role": "user", "content": "## Task (math)\n" + QUESTION + "\n" + "x" * 300}]
    reserve = max(config.max_action_tokens, config.max_repair_tokens + 400)
    return {compact: count([{"role": "system", "content": system_prompt(
        registry, "math", usage_hints=False, write_prompts=False, compact=compact)}, *turn]) + reserve
        for compact in (False, True)}


@pytest.mark.parametrize("room", ["full", "compact"])
def test_a_small_context_budget_never_drops_the_operator_table(room, caplog):
    registry = _with_unit_checker()
    model = ScriptedChatModel([], default=lambda msgs: "<action>add</action><operator>Programmer</operator>")
    base = DirectorConfig.small_model(max_turns=4, example_turn=False)
    needs = _needs(registry, model, base)
    assert needs[True] + 100 < needs[False]  # the compact table is much shorter
    budget = needs[False] + 400 if room == "full" else needs[True] + 100
    config = DirectorConfig.small_model(max_turns=4, example_turn=False, context_budget=budget)
    trajectory = Director(model, registry=registry, config=config).run(_task(), _executor())
    assert len(trajectory.turns) == 4
    for record in trajectory.turns:
        system = record.messages[0]["content"]
        assert record.messages[0]["role"] == "system" and record.context_tokens + 48 <= budget
        assert all(name in system for name in registry.names()), system  # every operator, every turn
        assert system == system_prompt(registry, "math", usage_hints=False, write_prompts=False,
                                       compact=room == "compact")
    assert ("operator table as one line per role" in caplog.text) is (room == "compact")


def test_a_context_budget_too_small_for_any_prompt_says_what_it_needs():
    registry = _with_unit_checker()
    model = ScriptedChatModel([], default=lambda msgs: "<action>finish</action>")
    needs = _needs(registry, model, DirectorConfig.small_model())
    config = DirectorConfig.small_model(max_turns=2, context_budget=needs[True] - 200)
    with pytest.raises(UserError, match=r"context_budget \d+ is too small .* at least \d+"):
        Director(model, registry=registry, config=config).run(_task(), _executor())


def test_a_turn_is_parsed_once_and_a_subclass_with_the_old_astep_still_works(monkeypatch):
    import flowsteer.canvas.env as env

    calls = []
    original = env.parse_action
    monkeypatch.setattr(env, "parse_action", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    add = "<action>add</action><operator>Custom</operator>"
    model = ScriptedChatModel([add, "<action>finish</action>"])
    trajectory = Director(model, config=DirectorConfig(max_turns=2, write_prompts=False)).run(_task(), _executor())
    assert len(trajectory.turns) == 2
    assert calls == [add, "<action>finish</action>"]  # once per turn (the canvas's rules, used by both)

    class OldCanvas(Canvas):
        async def astep(self, text):  # a subclass written before astep took parsed=
            return await super().astep(text)

    canvas = OldCanvas(_executor(), config=CanvasConfig(max_turns=2, write_prompts=False))
    again = Director(ScriptedChatModel([add, add]), config=DirectorConfig(max_turns=2)).run(_task(), canvas)
    assert [t.accepted for t in again.turns] == [True, True]


class _SeedRecorder(ScriptedChatModel):
    """A scripted model that notes the sampler seed each call was given."""

    seeds: list = []

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seeds.append(kwargs.get("seed"))
        return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)


def _seeds_of(task: Task, seed: int = 3) -> list:
    model = _SeedRecorder(GOOD_EPISODE[:4], seeds=[])
    config = DirectorConfig(max_turns=3, extra_call_kwargs={"seed": seed})
    Director(model, config=config).run(task, _executor())
    return model.seeds


def test_a_seeded_director_samples_each_call_and_each_task_with_its_own_seed():
    # seed + call index gave every episode's k-th call the same random numbers: an eval of n tasks
    # then repeated one sample's choice at each turn
    first = _seeds_of(Task(QUESTION, id="t1"))
    assert len(first) == 3 and len(set(first)) == 3  # different per call
    assert first == _seeds_of(Task(QUESTION, id="t1"))  # reproducible
    other = _seeds_of(Task(QUESTION, id="t2"))
    assert not set(first) & set(other)  # and per task, at every call index
    assert not set(first) & set(_seeds_of(Task(QUESTION, id="t1"), seed=4))


def test_the_seeded_single_turn_baseline_samples_each_task_with_its_own_seed():
    from flowsteer.director import design_once

    seeds = {}
    for task_id in ("t1", "t2", "t1"):
        model = _SeedRecorder(["Programmer -> Format"], seeds=[])
        design_once(model, Task(QUESTION, id=task_id), config=DirectorConfig(extra_call_kwargs={"seed": 3}))
        seeds.setdefault(task_id, set()).update(model.seeds)
    assert len(seeds["t1"]) == 1 and seeds["t1"] != seeds["t2"]  # reproducible per task, not shared


class _SamplingScripted(ScriptedChatModel):
    """A scripted model that takes a sampling temperature and records the one of each call."""

    temperature: float = 1.0
    seen: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(kwargs.get("temperature"))
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(kwargs.get("temperature"))
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


def test_a_greedy_director_samples_the_call_after_a_refused_turn():
    """Greedy on an unchanged canvas repeats the refused action to the turn limit: the call after a
    refused (or unparsable) turn samples at refused_temperature, the next accepted one is greedy again."""
    add = "<action>add</action><operator>Custom</operator>"
    model = _SamplingScripted([add, "<action>delete</action><target>node_9</target>", "no action at all", add,
                               add], seen=[])
    config = DirectorConfig(max_turns=5, temperature=0.0, refused_temperature=0.7, repair_attempts=0,
                            write_prompts=False)
    trajectory = Director(model, config=config).run(_task(), _executor())
    assert [t.accepted for t in trajectory.turns] == [True, False, False, True, True]
    assert model.seen == [0.0, 0.0, 0.7, 0.7, 0.0]
    config = DirectorConfig(max_turns=3, temperature=0.0, refused_temperature=0.0, repair_attempts=0,
                            write_prompts=False)
    model = _SamplingScripted([add, "<action>delete</action><target>node_9</target>", add], seen=[])
    Director(model, config=config).run(_task(), _executor())
    assert model.seen == [0.0, 0.0, 0.0]  # 0 keeps every call greedy
    with pytest.raises(UserError, match="refused_temperature must be >= 0"):
        DirectorConfig(refused_temperature=-1.0)
