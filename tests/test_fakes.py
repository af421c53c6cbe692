"""The shipped fakes: ScriptedChatModel and SimulatedExecutor."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from flowsteer.errors import UserError
from flowsteer.operators.parsing import answer_key
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor
from flowsteer.testing.fakes import answer_in
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter


class NoSandbox:
    async def arun(self, *args, **kwargs):
        raise AssertionError("no code should run in these tests")

    async def acheck(self, *args, **kwargs):
        raise AssertionError("no code should run in these tests")


# -- ScriptedChatModel ----------------------------------------------------------------------------
def test_scripted_replays_in_order_and_records_calls():
    model = ScriptedChatModel(["one", lambda messages: f"echo {messages[-1].content}"])
    assert isinstance(model, BaseChatModel)
    assert model.invoke("hi").content == "one"
    assert model.invoke([HumanMessage("ping")]).content == "echo ping"
    assert [m[-1].content for m in model.calls] == ["hi", "ping"]
    assert model.remaining == 0


def test_scripted_sets_usage_metadata():
    reply = ScriptedChatModel(["a reply of some length"]).invoke("a prompt of some length too")
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_scripted_exhaustion_is_a_clear_error_unless_default():
    model = ScriptedChatModel(["only"])
    model.invoke("x")
    with pytest.raises(UserError, match="exhausted.*call 2.*1 replies"):
        model.invoke("y")
    fallback = ScriptedChatModel(["first"], default="again")
    assert [fallback.invoke("q").content for _ in range(3)] == ["first", "again", "again"]


def test_scripted_failure_injection_does_not_consume_replies():
    model = ScriptedChatModel(["a", "b"], fail_every=2)
    assert model.invoke("1").content == "a"
    with pytest.raises(RuntimeError, match="injected failure on call 2"):
        model.invoke("2")
    assert model.invoke("3").content == "b"


async def test_scripted_latency_is_an_async_sleep():
    model = ScriptedChatModel([], default="ok", latency=0.2)
    start = time.perf_counter()
    replies = await asyncio.gather(*(model.ainvoke(str(i)) for i in range(5)))
    assert [r.content for r in replies] == ["ok"] * 5
    assert time.perf_counter() - start < 0.6  # concurrent, not 5 x 0.2 s


# -- SimulatedExecutor -------------------------------------------------------------------------------
QUESTIONS = {f"Ann has {i} pens and gets {2 * i} more. How many pens?": str(3 * i) for i in range(1, 81)}
INTERP_TASKS = [Task(q, answer=a) for q, a in QUESTIONS.items()]


def _accuracy(dsl: str, **kwargs) -> float:
    model = SimulatedExecutor(QUESTIONS, **kwargs)
    interp = Interpreter(model, sandbox=NoSandbox())
    workflow = parse(dsl)

    async def go():
        return await asyncio.gather(*(interp.arun(workflow, t) for t in INTERP_TASKS))

    results = asyncio.run(go())
    assert all(r.ok for r in results)
    return sum(answer_key(r.answer) == answer_key(t.answer) for r, t in zip(results, INTERP_TASKS, strict=True)) / len(results)


def _ask(model: SimulatedExecutor, operator: str, question: str, **sections: str) -> str:
    from flowsteer.operators.llm import SECTION_CANDIDATES, SECTION_FEEDBACK, SECTION_INPUT, SECTION_TASK

    titles = {"input": SECTION_INPUT, "feedback": SECTION_FEEDBACK, "candidates": SECTION_CANDIDATES}
    body = f"{SECTION_TASK}\n{question}" + "".join(f"\n\n{titles[k]}\n{v}" for k, v in sections.items())
    return model.invoke([SystemMessage(f"FlowSteer operator: {operator}\nrules"), HumanMessage(body)]).content


def test_simulated_skill_bounds():
    assert _accuracy("AnswerGenerate", skill=1.0) == pytest.approx(0.98, abs=0.05)
    assert _accuracy("AnswerGenerate", skill=0.0) == 0.0


def test_simulated_is_deterministic_given_seed():
    q = next(iter(QUESTIONS))
    a = [_ask(SimulatedExecutor(QUESTIONS, seed=7), "AnswerGenerate", q) for _ in range(2)]
    assert a[0] == a[1]
    replies = {_ask(SimulatedExecutor(QUESTIONS, seed=s, skill=0.5), "AnswerGenerate", q) for s in range(12)}
    assert len(replies) > 1  # other seeds draw differently


def test_simulated_structure_beats_a_single_solver():
    single = _accuracy("AnswerGenerate", skill=0.5, seed=1)
    checked = _accuracy("Plan -> AnswerGenerate -> Verify ? Revise : done -> Format", skill=0.5, seed=1)
    assert checked > single + 0.15


def test_simulated_checkers_catch_wrong_answers_and_revise_fixes():
    q, gold = next(iter(QUESTIONS.items()))
    strict = SimulatedExecutor(QUESTIONS, detect=1.0, false_alarm=0.0, fix=1.0)
    assert "<verdict>fail</verdict>" in _ask(strict, "Review", q, input="999")
    assert "<verdict>pass</verdict>" in _ask(strict, "Review", q, input=gold)
    assert "<verdict>fail</verdict>" in _ask(strict, "Verify", q, input="The answer is 999.")
    fixed = _ask(strict, "Revise", q, input="999", feedback="The answer 999 is wrong.")
    assert fixed == f"<solution>{gold}</solution>"
    kept = _ask(strict, "Revise", q, input=gold, feedback="The answer is wrong.")
    assert kept == f"<solution>{gold}</solution>"


def test_simulated_ensembles_vote_and_format_extracts():
    q = next(iter(QUESTIONS))
    model = SimulatedExecutor(QUESTIONS)
    candidates = "Candidate A:\n5\n\nCandidate B:\nThe answer is 6.\n\nCandidate C:\n<answer>6</answer>"
    assert "<choice>B</choice>" in _ask(model, "ScEnsemble", q, candidates=candidates)
    assert "<answer>6</answer>" in _ask(model, "Aggregate", q, candidates=candidates)
    assert _ask(model, "Format", q, input="Working...\nThe answer is 12.\n<answer>12</answer>") == "<answer>12</answer>"
    assert model.calls == ["ScEnsemble", "Aggregate", "Format"]


def test_simulated_programmer_writes_a_program_and_plan_writes_steps():
    q, gold = next(iter(QUESTIONS.items()))
    program = _ask(SimulatedExecutor(QUESTIONS, skill=1.0), "Programmer", q)
    assert program.startswith("<code>") and "def solve():" in program
    assert "<plan>" in _ask(SimulatedExecutor(QUESTIONS), "Plan", q)


def test_simulated_unknown_question_has_a_stable_invented_gold():
    model = SimulatedExecutor({}, skill=1.0)
    first = _ask(model, "AnswerGenerate", "An unseen question?")
    assert first == _ask(model, "AnswerGenerate", "An unseen question?")
    assert answer_in(first).isdigit()


def test_simulated_validates_probabilities():
    with pytest.raises(UserError, match="skill"):
        SimulatedExecutor({}, skill=1.5)


async def test_simulated_latency_overlaps_in_parallel_branches():
    model = SimulatedExecutor(QUESTIONS, latency=0.2)
    interp = Interpreter(model, sandbox=NoSandbox())
    start = time.perf_counter()
    result = await interp.arun(parse("[AnswerGenerate, Custom, AnswerGenerate] -> ScEnsemble"), INTERP_TASKS[0])
    assert result.ok and time.perf_counter() - start < 0.2 * 4  # 3 branches overlap (+ one ensemble call at most)


def test_simulated_code_task_runs_through_programmer_test_and_format():
    sandbox_module = pytest.importorskip("flowsteer.sandbox")
    gold = "def add(a, b):\n    return a + b"
    task = Task("Write add(a, b) returning the sum.", kind="code", entry_point="add",
                public_tests="assert add(2, 3) == 5\n", hidden_tests="assert add(1, 1) == 2\n")
    model = SimulatedExecutor({task.question: gold}, skill=1.0)
    interp = Interpreter(model, sandbox=sandbox_module.Sandbox())
    result = interp.run(parse("Programmer -> Test ? Revise : done -> Format"), task)
    assert result.ok and result.answer == gold
    assert [t.operator for t in result.trace] == ["Programmer", "Test", "Format"]
    assert result.trace[1].result.verdict is True
    wrong = SimulatedExecutor({task.question: gold}, skill=0.0, fix=1.0)
    result = Interpreter(wrong, sandbox=sandbox_module.Sandbox()).run(
        parse("Programmer -> Test ? Revise : done -> Format"), task)
    test = result.trace[1]
    assert test.result.verdict is False and "AssertionError" in test.result.feedback
    assert result.answer == gold  # Revise fixed the flagged code


def test_sections_reader_keeps_the_last_body_of_a_repeated_title_and_ignores_a_preamble():
    from flowsteer.testing.fakes import _sections

    text = "preamble\n## Task\n\n  What is 2 + 3?\n\n## Input\nfirst\n## Task\nsecond\n  line  \n\n## Empty\n"
    assert _sections(text) == {"## Task": "second\n  line", "## Input": "first", "## Empty": ""}
    assert list(_sections(text)) == ["## Task", "## Input", "## Empty"]


async def test_latency_jitter_spreads_each_sleep_within_its_bounds():
    model = ScriptedChatModel([], default="ok", latency=0.04, latency_jitter=0.5)
    seconds = []
    for _ in range(6):
        start = time.perf_counter()
        await model.ainvoke("hi")
        seconds.append(time.perf_counter() - start)
    assert all(0.019 <= s < 0.5 for s in seconds)  # 0.02..0.06 s plus scheduling slack
    assert max(seconds) - min(seconds) > 0.003  # not one fixed value


@pytest.mark.parametrize("make", [lambda j: ScriptedChatModel([], latency_jitter=j),
                                  lambda j: SimulatedExecutor(latency_jitter=j)])
def test_latency_jitter_outside_0_1_is_refused_with_the_range(make):
    with pytest.raises(UserError, match=r"latency_jitter .* \[0, 1\]"):
        make(1.5)
    assert make(0.0).latency_jitter == 0.0
