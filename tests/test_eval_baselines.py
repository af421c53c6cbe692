"""Every method of the harness on scripted models / the simulated executor, and the eval CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from flowsteer.cli import main
from flowsteer.errors import UserError
from flowsteer.evaluation import (
    CoTBaseline,
    DirectorMethod,
    IOBaseline,
    SelfConsistency,
    SingleTurn,
    TemplateBaseline,
    evaluate,
    method_label,
    parse_method,
    workflow_templates,
)
from flowsteer.evaluation.baselines import majority_vote
from flowsteer.fallback import FALLBACK_TEMPLATES
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

FIXTURES = Path(__file__).parent / "fixtures" / "data"

ACTIONS = [
    "<action>add</action><operator>Plan</operator>",
    "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
    "<action>add</action><operator>ScEnsemble</operator>",
    "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
    "<true>Revise</true><false>done</false>",
    "<action>add</action><operator>Format</operator>",
    "<action>finish</action>",
]
DESIGNED = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def math_tasks(n: int) -> list[Task]:
    return [Task(f"What is {i} + 1?", "math", f"m{i}", str(i + 1), source="toy") for i in range(n)]


def simulated(tasks: list[Task], skill: float = 0.7) -> SimulatedExecutor:
    return SimulatedExecutor({t.question: str(t.answer) for t in tasks}, skill=skill)


def scripted_director(tasks: list[Task]) -> ScriptedChatModel:
    """A director that builds DESIGNED for every task (per-task action counters: items interleave)."""
    counters: dict[str, int] = {}

    def reply(messages: list[BaseMessage]) -> str:
        if str(messages[0].content).startswith("You write the prompt"):
            return "Solve it step by step and state the number."
        last = str(messages[-1].content)
        key = next(t.question for t in tasks if t.question in last)
        counters[key] = counters.get(key, 0) + 1
        return ACTIONS[min(counters[key], len(ACTIONS)) - 1]

    return ScriptedChatModel(default=reply)


def test_parse_method_and_labels() -> None:
    cases = {
        None: (DirectorMethod(), "flowsteer"), "io": (IOBaseline(), "io"), "cot": (CoTBaseline(), "cot"),
        "sc": (SelfConsistency(5), "sc@5"), "sc:3": (SelfConsistency(3), "sc@3"),
        "template:paper-math": (TemplateBaseline("paper-math"), "template:paper-math"),
        "template": (TemplateBaseline(None), "template"), "single-turn": (SingleTurn(), "single-turn"),
        "untrained": (DirectorMethod("untrained"), "untrained"),
    }
    for spec, (method, label) in cases.items():
        assert parse_method(spec) == method
        assert method_label(method) == label
    with pytest.raises(UserError, match="--director"):
        parse_method(None, director=False)
    with pytest.raises(UserError, match="k >= 1"):
        parse_method("sc:0")


def test_templates_include_the_papers_and_the_fallbacks() -> None:
    templates = workflow_templates()
    assert templates["paper-math"] == "Plan -> Programmer -> Verify ? Revise : done -> Format"
    assert templates["paper-code"] == "Programmer -> Test ? Programmer : done -> Format"
    for name, dsl in FALLBACK_TEMPLATES.items():
        assert templates[name] == dsl


def test_io_is_one_call_and_the_reply_is_the_answer(tmp_path: Path) -> None:
    model = ScriptedChatModel(default="The answer is \\boxed{1}")
    summary = evaluate(math_tasks(3), executor=model, baseline="io", out_dir=tmp_path)
    assert len(model.calls) == 3
    assert all(r.answer == "The answer is \\boxed{1}" and r.executor_calls == 1 for r in summary.results)
    assert "step by step" not in str(model.calls[0][0].content)
    assert summary.group("toy", "io").correct == 1  # only "What is 0 + 1?" has gold 1


def test_cot_prompts_for_reasoning_and_extracts_the_answer(tmp_path: Path) -> None:
    model = ScriptedChatModel(default="First 2 + 1 = 3, then check: yes.\nThe answer is \\boxed{3}.")
    summary = evaluate([Task("What is 2 + 1?", "math", "a", "3", source="toy")], executor=model, baseline="cot",
                       out_dir=tmp_path)
    (item,) = summary.results
    assert "step by step" in str(model.calls[0][0].content)
    assert item.answer == "3" and item.correct and item.stop_reason == "answered"


def test_self_consistency_takes_k_samples_and_votes(tmp_path: Path) -> None:
    task = Task("What is 2 + 3?", "math", "a", "5", source="toy")
    model = ScriptedChatModel(["\\boxed{7}", "\\boxed{5}", "so \\boxed{5.0}", "\\boxed{4}", "\\boxed{5}"])
    summary = evaluate([task], executor=model, baseline="sc", sc_samples=5, out_dir=tmp_path)
    (item,) = summary.results
    assert len(model.calls) == 5 and item.method == "sc@5" and item.executor_calls == 5
    assert item.answer == "5" and item.correct  # 5 and 5.0 are one answer: 3 votes beat the first sample's 1
    assert item.details["votes"] == [1, 3, 3, 1, 3] and item.details["samples"][2] == "5.0"


def test_majority_vote_by_kind() -> None:
    qa = Task("Who?", "qa", answer="x")
    assert majority_vote(qa, ["The Beatles", "beatles", "Queen"]) == (0, [2, 2, 1])
    code = Task("f", "code", entry_point="f")
    assert majority_vote(code, ["def f():\n  return 1", "def f(): return 2", "def f():  return 1"]) == (0, [2, 1, 2])
    math = Task("m", "math", answer="1")
    assert majority_vote(math, ["1/2", "0.5", "2"]) == (0, [2, 2, 1])


@pytest.mark.parametrize("spec,dsl", [
    ("template:paper-math", "Plan -> Programmer -> Verify ? Revise : done -> Format"),
    ("template", FALLBACK_TEMPLATES["math-default"]),
    ("template:Custom -> Review ? Revise : done -> Format", "Custom -> Review ? Revise : done -> Format"),
])
def test_template_runs_the_fixed_workflow(tmp_path: Path, spec: str, dsl: str) -> None:
    tasks = math_tasks(3)
    executor = simulated(tasks)
    summary = evaluate(tasks, executor=executor, baseline=spec, out_dir=tmp_path)
    for item in summary.results:
        assert item.workflow == dsl and item.stop_reason == "template" and item.executor_calls > 0
        assert item.errors == ()
    assert "Format" in executor.calls


def test_code_template_is_scored_on_hidden_tests(tmp_path: Path) -> None:
    reference = "def add(a, b):\n    return a + b"
    task = Task("Write add(a, b) returning the sum.\nThe solution defines the function add.", "code", "c1",
                entry_point="add", public_tests="assert add(1, 2) == 3\n",
                hidden_tests="assert add(2, 2) == 4\nassert add(-1, 1) == 0\n", source="toycode")
    executor = SimulatedExecutor({task.question: reference}, skill=1.0)
    summary = evaluate([task], executor=executor, baseline="template:paper-code", out_dir=tmp_path)
    (item,) = summary.results
    assert item.metric == "pass@1" and item.workflow.startswith("Programmer -> Test")
    assert item.correct and item.score == 1.0, item.details


def test_director_path_labelled_untrained(tmp_path: Path) -> None:
    tasks = math_tasks(2)
    summary = evaluate(tasks, executor=simulated(tasks), director=scripted_director(tasks), baseline="untrained",
                       out_dir=tmp_path, concurrency=2)
    for item in summary.results:
        assert item.method == "untrained" and item.baseline == "untrained"
        assert item.workflow == DESIGNED and item.stop_reason == "finish" and item.fallback is None
        assert item.turns >= len(ACTIONS) and item.director_tokens_in > 0 and item.executor_tokens_in > 0
        assert item.tokens_in == item.director_tokens_in + item.executor_tokens_in
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["groups"][0]["method"] == "untrained" and data["groups"][0]["mean_turns"] >= len(ACTIONS)


def test_director_turn_limit(tmp_path: Path) -> None:
    tasks = math_tasks(1)
    summary = evaluate(tasks, executor=simulated(tasks), director=scripted_director(tasks), max_turns=2,
                       label="flowsteer-lora", out_dir=tmp_path)
    (item,) = summary.results
    assert item.method == "flowsteer-lora" and item.turns == 2 and item.stop_reason != "finish"


def test_single_turn_designs_once(tmp_path: Path) -> None:
    tasks = math_tasks(2)
    director = ScriptedChatModel(default=f"Here is my workflow:\n{DESIGNED}")
    summary = evaluate(tasks, executor=simulated(tasks), director=director, baseline="single-turn",
                       out_dir=tmp_path)
    assert len(director.calls) == 2
    for item in summary.results:
        assert item.workflow == DESIGNED and item.turns == 1 and item.stop_reason == "finish"
    bad = evaluate(tasks[:1], executor=simulated(tasks), director=ScriptedChatModel(default="no idea"),
                   baseline="single-turn", out_dir=tmp_path / "bad")
    assert bad.results[0].stop_reason == "invalid" and not bad.results[0].correct


def test_cli_eval_with_scripted_executor_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["\\boxed{18}", "\\boxed{3}", "\\boxed{70000}"]))
    out = tmp_path / "out"
    args = ["eval", "--dataset", "gsm8k", "--data", str(FIXTURES / "gsm8k" / "test.jsonl"), "--limit", "2",
            "--baseline", "io", "--executor", f"scripted:{replies}", "--out", str(out), "--concurrency", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| dataset | method | metric | score | 95% CI | n |" in printed and "| gsm8k | io |" in printed
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in records] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert main([*args[:6], "3", *args[7:]]) == 0  # --limit 3: only the third item runs
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "summary.json").read_text())["groups"][0]["n"] == 3


def test_cli_reports_developer_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--dataset", "nope", "--baseline", "io", "--out", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["eval", "--dataset", "gsm8k", "--baseline", "magic", "--out", str(tmp_path)]) == 2
    assert "unknown baseline" in capsys.readouterr().err
