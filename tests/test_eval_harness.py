"""The evaluation harness: results files, summary numbers, concurrency, cache, resume after a kill."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from flowsteer.errors import UserError
from flowsteer.evaluation import (
    CachedChatModel,
    CallStore,
    aevaluate,
    bootstrap_interval,
    evaluate,
    read_results,
    summarize,
    wilson_interval,
)
from flowsteer.evaluation.results import ItemResult, ResultsWriter, percentile
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor

RESULT_FIELDS = {
    "task_id", "dataset", "method", "kind", "metric", "workflow", "answer", "score", "correct", "turns",
    "tokens_in", "tokens_out", "latency_s", "errors", "stop_reason", "fallback", "baseline", "status",
}


def math_tasks(n: int) -> list[Task]:
    return [Task(f"What is {i} + 1?", "math", f"m{i}", str(i + 1), source="toy") for i in range(n)]


def boxed_by_question(wrong: set[int] = frozenset()) -> Any:
    """A reply function answering `What is i + 1?` correctly unless i is in ``wrong``."""

    def reply(messages: list[BaseMessage]) -> str:
        text = str(messages[-1].content)
        i = int(text.split("What is ")[1].split(" ")[0])
        return f"The answer is \\boxed{{{i + 1 + (5 if i in wrong else 0)}}}"

    return reply


class GaugedModel(BaseChatModel):
    """An async chat model that sleeps per call and records the most calls in flight at once."""

    delay: float = 0.05
    inflight: int = 0
    peak: int = 0
    count: int = 0

    @property
    def _llm_type(self) -> str:
        return "gauged"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        self.inflight += 1
        self.count += 1
        self.peak = max(self.peak, self.inflight)
        await asyncio.sleep(self.delay)
        self.inflight -= 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="\\boxed{0}"))])


# -- results files ----------------------------------------------------------------------------------
def test_results_jsonl_summary_json_and_markdown(tmp_path: Path) -> None:
    tasks = math_tasks(5)
    model = ScriptedChatModel(default=boxed_by_question(wrong={1, 3}))
    summary = evaluate(tasks, executor=model, baseline="io", out_dir=tmp_path, concurrency=2)

    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    for record in records:
        assert RESULT_FIELDS <= set(record)
        assert record["dataset"] == "toy" and record["method"] == "io" and record["baseline"] == "io"
        assert record["metric"] == "accuracy" and record["status"] == "ok" and record["errors"] == []
        assert record["tokens_in"] > 0 and record["tokens_out"] > 0 and record["latency_s"] >= 0
    by_id = {r["task_id"]: r for r in records}
    assert sorted(by_id) == [f"m{i}" for i in range(5)]
    assert [by_id[f"m{i}"]["correct"] for i in range(5)] == [True, False, True, False, True]

    data = json.loads((tmp_path / "summary.json").read_text())
    (group,) = data["groups"]
    expected = wilson_interval(3, 5)
    assert group["n"] == 5 and group["correct"] == 3 and math.isclose(group["score"], 0.6)
    assert math.isclose(group["ci"]["low"], expected.low) and math.isclose(group["ci"]["high"], expected.high)
    assert group["ci"]["method"] == "wilson" and group["errors"] == 0
    assert group["tokens"]["in"] == sum(r["tokens_in"] for r in records)
    latencies = [r["latency_s"] for r in records]
    assert math.isclose(group["latency"]["p50"], percentile(latencies, 50))
    assert summary.group("toy", "io").score == pytest.approx(0.6)

    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[0] == "| dataset | method | metric | score | 95% CI | n |"
    assert table[2] == f"| toy | io | accuracy | 60.0 | [{100 * expected.low:.1f}, {100 * expected.high:.1f}] | 5 |"


def test_wilson_and_bootstrap_intervals() -> None:
    ci = wilson_interval(0, 10)
    assert ci.low == 0.0 and 0.25 < ci.high < 0.32  # 0/10 still leaves ~31% plausible
    ci = wilson_interval(81, 100)
    assert ci.low == pytest.approx(0.7222, abs=1e-3) and ci.high == pytest.approx(0.8749, abs=1e-3)  # by hand: 0.7985 -+ 0.0763
    values = [0.0, 0.5, 1.0, 0.25, 0.75, 1.0, 0.0, 0.6]
    a, b = bootstrap_interval(values, seed=3), bootstrap_interval(values, seed=3)
    assert a == b and a.low < sum(values) / len(values) < a.high
    assert percentile([1, 2, 3, 4], 50) == 2.5


def test_qa_metric_is_mean_f1_with_bootstrap_and_em_reported(tmp_path: Path) -> None:
    tasks = [Task("Who wrote Hamlet?", "qa", "q1", "William Shakespeare", source="toyqa"),
             Task("Capital of France?", "qa", "q2", "Paris", source="toyqa")]
    replies = {"Who wrote Hamlet?": "<answer>Shakespeare</answer>", "Capital of France?": "<answer>Paris</answer>"}
    model = ScriptedChatModel(default=lambda m: next(v for k, v in replies.items() if k in str(m[-1].content)))
    summary = evaluate(tasks, executor=model, baseline="io", out_dir=tmp_path, seed=7)
    group = summary.group("toyqa", "io")
    f1s = sorted(r.f1 for r in summary.results)
    assert f1s == pytest.approx([2 / 3, 1.0])
    assert group.metric == "f1" and group.score == pytest.approx((2 / 3 + 1) / 2)
    assert group.em == pytest.approx(0.5) and group.ci.method == "bootstrap"
    assert group.ci == bootstrap_interval([r.f1 for r in summary.results], seed=7)
    assert "(EM 50.0)" in (tmp_path / "summary.md").read_text()


def test_failing_item_is_recorded_not_fatal(tmp_path: Path) -> None:
    model = ScriptedChatModel(default=boxed_by_question(), fail_every=2)
    summary = evaluate(math_tasks(4), executor=model, baseline="io", out_dir=tmp_path, concurrency=1)
    failed = [r for r in summary.results if r.status == "error"]
    assert len(failed) == 2 and all("injected failure" in r.errors[0] for r in failed)
    assert summary.group("toy", "io").errors == 2
    # errored items run again on resume; finished ones do not
    again = evaluate(math_tasks(4), executor=ScriptedChatModel(default=boxed_by_question()), baseline="io",
                     out_dir=tmp_path, cache=False)
    assert again.ran == 2 and again.skipped == 2 and again.group("toy", "io").score == 1.0


def test_developer_errors_raise() -> None:
    with pytest.raises(UserError, match="director"):
        evaluate(math_tasks(1), executor=SimulatedExecutor())
    with pytest.raises(UserError, match="unknown baseline"):
        evaluate(math_tasks(1), executor=SimulatedExecutor(), baseline="magic")
    with pytest.raises(UserError, match="known templates"):
        evaluate(math_tasks(1), executor=SimulatedExecutor(), baseline="template:nope ->")
    with pytest.raises(UserError, match="concurrency"):
        evaluate(math_tasks(1), executor=SimulatedExecutor(), baseline="io", concurrency=0)


# -- concurrency -------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrency_limit_is_respected(limit: int) -> None:
    model = GaugedModel()
    summary = await aevaluate(math_tasks(9), executor=model, baseline="io", concurrency=limit)
    assert model.count == 9 and summary.ran == 9
    assert model.peak == limit


async def test_items_run_concurrently_not_one_by_one() -> None:
    model = GaugedModel(delay=0.2)
    started = time.perf_counter()
    await aevaluate(math_tasks(8), executor=model, baseline="io", concurrency=8)
    assert time.perf_counter() - started < 0.2 * 8 / 2


# -- cache -------------------------------------------------------------------------------------------
def test_rerun_hits_the_cache_and_never_calls_the_executor(tmp_path: Path) -> None:
    tasks = math_tasks(3)
    executor = SimulatedExecutor({t.question: t.answer for t in tasks}, skill=0.7)
    first = evaluate(tasks, executor=executor, baseline="template:math-default", out_dir=tmp_path)
    calls = len(executor.calls)
    assert calls > 0 and all(r.cache_hits == 0 for r in first.results)
    (tmp_path / "results.jsonl").unlink()  # forget the results, keep the call cache
    second = evaluate(tasks, executor=executor, baseline="template:math-default", out_dir=tmp_path)
    assert len(executor.calls) == calls
    before = {r.task_id: r for r in first.results}
    for r in second.results:
        assert r.answer == before[r.task_id].answer and r.correct == before[r.task_id].correct
        assert r.cache_hits == r.executor_calls > 0
        assert r.executor_tokens_in == before[r.task_id].executor_tokens_in  # what the calls cost originally


def test_identical_requests_in_one_item_get_distinct_cached_samples(tmp_path: Path) -> None:
    store = CallStore(tmp_path / "calls.sqlite")
    inner = ScriptedChatModel(["one", "two", "three"])
    cached = CachedChatModel(inner, store)
    assert [cached.invoke("same").content for _ in range(3)] == ["one", "two", "three"]
    replay = CachedChatModel(ScriptedChatModel(["one", "two", "three"]), store)
    assert [replay.invoke("same").content for _ in range(3)] == ["one", "two", "three"]
    assert replay.hits == 3 and replay.misses == 0
    other = CachedChatModel(ScriptedChatModel(["x"]), store)  # a different model: its own entries
    assert other.invoke("same").content == "x" and other.misses == 1
    assert len(store) == 4


def test_cache_keys_include_generation_params(tmp_path: Path) -> None:
    cached = CachedChatModel(ScriptedChatModel(["a", "b"]), CallStore(tmp_path / "c.sqlite"))
    assert cached.invoke("q", temperature=0.0).content == "a"
    assert cached.invoke("q", temperature=0.7).content == "b"  # first of its kind, yet not the cached "a"
    assert cached.misses == 2


# -- resume ------------------------------------------------------------------------------------------
def test_interrupt_midway_then_resume_runs_only_unfinished_items(tmp_path: Path) -> None:
    tasks = math_tasks(6)
    seen: list[str] = []

    def stop_at_fourth(messages: list[BaseMessage]) -> str:
        seen.append(str(messages[-1].content))
        if len(seen) == 4:
            raise KeyboardInterrupt
        return boxed_by_question()(messages)

    with pytest.raises(KeyboardInterrupt):
        evaluate(tasks, executor=ScriptedChatModel(default=stop_at_fourth), baseline="io", out_dir=tmp_path,
                 concurrency=1)
    finished = {r.task_id for r in read_results(tmp_path / "results.jsonl")}
    assert finished == {"m0", "m1", "m2"}

    resumed_model = ScriptedChatModel(default=boxed_by_question())
    summary = evaluate(tasks, executor=resumed_model, baseline="io", out_dir=tmp_path, concurrency=2)
    asked = sorted(str(m[-1].content).split("What is ")[1].split(" ")[0] for m in resumed_model.calls)
    assert asked == ["3", "4", "5"]  # m3's call was interrupted, so it was never cached: asked again
    assert summary.ran == 3 and summary.skipped == 3
    assert sorted(r.task_id for r in summary.results) == [f"m{i}" for i in range(6)]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from flowsteer.evaluation import evaluate
    from flowsteer.tasks import Task
    from flowsteer.testing import ScriptedChatModel

    out, kill_at = sys.argv[1], int(sys.argv[2])
    tasks = [Task(f"What is {i} + 1?", "math", f"m{i}", str(i + 1), source="toy") for i in range(6)]
    log = open(os.path.join(out, "asked.log"), "a")

    def reply(messages):
        i = int(str(messages[-1].content).split("What is ")[1].split(" ")[0])
        log.write(f"{i}\\n"); log.flush()
        if i == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"\\\\boxed{{{i + 1}}}"

    evaluate(tasks, executor=ScriptedChatModel(default=reply), baseline="cot", out_dir=out, concurrency=1)
""")


def test_sigkilled_run_resumes_without_rerunning_finished_items(tmp_path: Path) -> None:
    script = tmp_path / "run_eval.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, str(script), str(tmp_path), "3"], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert {r.task_id for r in read_results(tmp_path / "results.jsonl")} == {"m0", "m1", "m2"}

    (tmp_path / "asked.log").unlink()
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "-1"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert sorted((tmp_path / "asked.log").read_text().split()) == ["3", "4", "5"]
    records = read_results(tmp_path / "results.jsonl")
    assert sorted(r.task_id for r in records) == [f"m{i}" for i in range(6)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["groups"][0]["n"] == 6 and summary["groups"][0]["score"] == 1.0


def test_truncated_last_line_is_skipped_and_appending_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    record = ItemResult("a", "d", "io", "math", "accuracy", "1", 1.0, True)
    with ResultsWriter(path) as writer:
        writer.write(record)
    with path.open("a") as handle:
        handle.write('{"task_id": "b", "data')  # a kill in the middle of a line
    assert [r.task_id for r in read_results(path)] == ["a"]
    with ResultsWriter(path) as writer:
        writer.write(ItemResult("c", "d", "io", "math", "accuracy", "0", 0.0, False))
    assert [r.task_id for r in read_results(path)] == ["a", "c"]
    assert summarize(read_results(path)).group("d", "io").n == 2


def test_without_out_dir_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    summary = evaluate(math_tasks(2), executor=ScriptedChatModel(default=boxed_by_question()), baseline="io")
    assert summary.ran == 2 and summary.group("toy", "io").score == 1.0
    assert list(tmp_path.iterdir()) == []


def test_duplicate_and_missing_task_ids_get_unique_keys(tmp_path: Path) -> None:
    tasks = [Task("What is 1 + 1?", "math", "", "2", source="toy"), Task("What is 1 + 1?", "math", "", "2",
                                                                             source="toy")]
    summary = evaluate(tasks, executor=ScriptedChatModel(default="\\boxed{2}"), baseline="io", out_dir=tmp_path)
    ids = [r.task_id for r in summary.results]
    assert len(set(ids)) == 2 and ids[1] == ids[0] + "#2"


# -- director episodes: trajectories.jsonl -----------------------------------------------------------
def test_director_items_store_their_episode_and_question(tmp_path: Path) -> None:
    from director_scripts import policy_director

    from flowsteer.report.evaluation import read_trajectories

    tasks = math_tasks(3)
    executor = SimulatedExecutor({t.question: t.answer or "" for t in tasks}, skill=1.0)
    evaluate(tasks, executor=executor, director=policy_director(), out_dir=tmp_path, concurrency=2)
    lines = [json.loads(x) for x in (tmp_path / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(x["task_id"] for x in lines) == ["m0", "m1", "m2"]
    results = {r.key: r for r in read_results(tmp_path / "results.jsonl")}
    stored = read_trajectories(tmp_path)
    assert set(stored) == set(results)
    for key, episode in stored.items():
        item = results[key]
        assert item.question == episode["task"]["question"] and item.question.startswith("What is")
        assert episode["turns"] and episode["answer"] == item.answer and episode["workflow"] == item.workflow

    # a kill after an item's episode line but before its result line: resume runs it again, and
    # the reader keeps one episode per item, the one of the surviving result
    kept = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(x for x in kept if '"m1"' not in x) + "\n")
    again = evaluate(tasks, executor=executor, director=policy_director(), out_dir=tmp_path)
    assert again.ran == 1 and again.skipped == 2
    assert len((tmp_path / "trajectories.jsonl").read_text().splitlines()) == 4
    stored = read_trajectories(tmp_path)
    assert len(stored) == 3
    latest_m1 = next(r for r in again.results if r.task_id == "m1")
    assert stored[("toy", "flowsteer", "m1")]["answer"] == latest_m1.answer


def test_single_turn_items_store_episodes_and_baselines_do_not(tmp_path: Path) -> None:
    tasks = math_tasks(2)
    executor = SimulatedExecutor({t.question: t.answer or "" for t in tasks}, skill=1.0)
    director = ScriptedChatModel(default="Plan -> Custom -> Format")
    evaluate(tasks, executor=executor, director=director, baseline="single-turn", out_dir=tmp_path / "st")
    lines = [json.loads(x) for x in (tmp_path / "st" / "trajectories.jsonl").read_text().splitlines()]
    assert [x["method"] for x in lines] == ["single-turn", "single-turn"] and all(x["turns"] for x in lines)
    evaluate(tasks, executor=executor, baseline="io", out_dir=tmp_path / "io")
    assert not (tmp_path / "io" / "trajectories.jsonl").exists()
    assert [r.question for r in read_results(tmp_path / "io" / "results.jsonl")] == [t.question for t in tasks]


# -- aborted workflow runs -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["template:Plan -> Custom -> Format", "director"])
def test_aborted_workflow_runs_are_errors_and_run_again(tmp_path: Path, method: str) -> None:
    """An executor failure that aborts the workflow run is an ``error`` item, like a raising IO call:
    counted, scored 0, and run again on resume (not kept as a finished ``ok`` item)."""
    from director_scripts import policy_director

    from flowsteer.testing import FaultyChatModel

    tasks = math_tasks(8)
    gold = {t.question: t.answer or "" for t in tasks}
    kwargs: dict[str, Any] = {"director": policy_director()} if method == "director" else {"baseline": method}
    faulty = FaultyChatModel(SimulatedExecutor(gold, skill=1.0), fail_rate=0.3, seed=1)
    first = evaluate(tasks, executor=faulty, out_dir=tmp_path, cache=False, **kwargs)
    aborted = [r for r in first.results if r.errors]
    assert aborted and all("InjectedFault" in r.errors[0] for r in aborted)
    assert all(r.status == "error" and r.score == 0.0 for r in aborted)
    assert all(r.status == "ok" for r in first.results if not r.errors)
    group = first.groups[0]
    assert group.errors == len(aborted)

    again = evaluate(tasks, executor=SimulatedExecutor(gold, skill=1.0), out_dir=tmp_path, cache=False, **kwargs)
    assert again.ran == len(aborted) and again.skipped == len(tasks) - len(aborted)
    assert all(r.status == "ok" and not r.errors and r.correct for r in again.results)


def test_a_failing_director_call_is_an_error_item_with_its_episode_kept(tmp_path: Path) -> None:
    from director_scripts import policy_director

    from flowsteer.report.evaluation import read_trajectories
    from flowsteer.testing import FaultyChatModel

    tasks = math_tasks(3)
    executor = SimulatedExecutor({t.question: t.answer or "" for t in tasks}, skill=1.0)
    broken = FaultyChatModel(policy_director(), fail_rate=1.0)
    first = evaluate(tasks, executor=executor, director=broken, out_dir=tmp_path, cache=False)
    assert all(r.status == "error" and r.stop_reason == "error" for r in first.results)
    assert all(r.errors and "InjectedFault" in r.errors[0] for r in first.results)
    assert {e["stop_reason"] for e in read_trajectories(tmp_path).values()} == {"error"}
    again = evaluate(tasks, executor=executor, director=policy_director(), out_dir=tmp_path, cache=False)
    assert again.ran == 3 and all(r.status == "ok" and r.correct for r in again.results)
    assert {e["stop_reason"] for e in read_trajectories(tmp_path).values()} == {"finish"}


@pytest.mark.parametrize("preset", ["default", "small_model"])
def test_eval_and_orchestrator_canvases_follow_the_director_preset(tmp_path: Path, preset: str) -> None:
    # the canvas an evaluated (or orchestrated) episode runs on takes its turn limit and its prompt
    # writing from the director's config: the small-model preset writes no prompts, so its turns
    # are all actions and the episode ends by its own finish
    from director_scripts import ACTIONS, policy_director

    from flowsteer.director import Director, DirectorConfig
    from flowsteer.integrations.orchestrator import Orchestration
    from flowsteer.report.evaluation import read_trajectories

    config = DirectorConfig() if preset == "default" else DirectorConfig.small_model(constrained=False)
    tasks = math_tasks(1)
    executor = SimulatedExecutor({t.question: t.answer or "" for t in tasks}, skill=1.0)
    evaluate(tasks, executor=executor, director=policy_director(), director_config=config, out_dir=tmp_path)
    (episode,) = read_trajectories(tmp_path).values()
    kinds = [t["kind"] for t in episode["turns"]]
    assert episode["stop_reason"] == "finish"
    if preset == "small_model":
        assert kinds == ["action"] * len(ACTIONS)
    else:
        assert "prompt" in kinds and len(kinds) > len(ACTIONS)

    engine = Orchestration(director=Director(policy_director(), config=config), executor=executor, max_turns=20)
    design = asyncio.run(engine.design(tasks[0]))
    assert design["stop_reason"] == "finish"
    assert (design["turns"] == len(ACTIONS)) is (preset == "small_model")
