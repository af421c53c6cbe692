"""Executor faults: a chat model that fails, hangs or talks garbage on ~30% of calls.

Canvas episodes, director episodes (``arun_many`` under a concurrency limit) and evaluations all
finish; retries are bounded and counted; errors show in the trajectory and the results file; no run
deadlocks (every test has a hard timeout); concurrency limits hold (peak in-flight calls measured).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from director_scripts import policy_director

from flowsteer.canvas import Canvas, CanvasConfig
from flowsteer.director import Director, DirectorConfig
from flowsteer.errors import UserError
from flowsteer.evaluation import aevaluate, evaluate, read_results
from flowsteer.models.retry import RetriesExhausted, RetryingChatModel, with_retries
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel, SimulatedExecutor
from flowsteer.testing.faults import GARBAGE, FaultyChatModel, InjectedFault
from flowsteer.workflow.interpreter import Interpreter

pytestmark = pytest.mark.timeout(120)

RATES = {"fail_rate": 0.1, "timeout_rate": 0.1, "garbage_rate": 0.1}  # 30% of calls go wrong
WORKFLOW_TEMPLATE = "template:Plan -> Custom -> Review ? Revise : done -> Format"


def math_tasks(n: int) -> list[Task]:
    return [Task(f"What is {i} + 1?", "math", f"m{i}", str(i + 1), source="toy") for i in range(n)]


def faulty_executor(tasks: list[Task], seed: int = 0, hang_s: float = 30.0) -> FaultyChatModel:
    """A simulated executor with :data:`RATES` faults. Nothing in the interpreter bounds a call, so
    a run without :func:`with_retries` waits out each hang: give those a short ``hang_s``."""
    gold = {t.question: t.answer or "" for t in tasks}
    return FaultyChatModel(SimulatedExecutor(gold, skill=0.8, seed=seed), seed=seed, hang_s=hang_s, **RATES)


def retrying(model: FaultyChatModel, attempts: int = 4) -> RetryingChatModel:
    return with_retries(model, attempts=attempts, backoff=0.001, max_backoff=0.01, timeout=0.2, seed=1)


# -- the fault injector ------------------------------------------------------------------------------
def test_fault_mix_matches_the_rates_and_is_seeded() -> None:
    model = FaultyChatModel(ScriptedChatModel(default="fine"), fail_rate=0.2, garbage_rate=0.1, seed=3)
    outcomes = []
    for i in range(1000):
        try:
            outcomes.append(model.invoke(f"question {i}").content)
        except InjectedFault:
            outcomes.append(None)
    faults = model.faults
    assert sum(faults.values()) == 1000 and faults["timeout"] == 0
    assert 0.16 < faults["error"] / 1000 < 0.24 and 0.07 < faults["garbage"] / 1000 < 0.13
    assert outcomes.count(None) == faults["error"]
    assert all(o in GARBAGE for o in outcomes if o not in (None, "fine"))
    # the same seed and calls in another order: each message gets the same fault
    again = FaultyChatModel(ScriptedChatModel(default="fine"), fail_rate=0.2, garbage_rate=0.1, seed=3)
    for i in reversed(range(1000)):
        try:
            again.invoke(f"question {i}")
        except InjectedFault:
            pass
    first = {i: a.fault for i, a in enumerate(model.attempts)}
    second = {999 - i: a.fault for i, a in enumerate(again.attempts)}
    assert first == second
    other_seed = FaultyChatModel(ScriptedChatModel(default="fine"), fail_rate=0.2, seed=4)
    for i in range(50):
        try:
            other_seed.invoke(f"question {i}")
        except InjectedFault:
            pass
    assert [a.fault for a in other_seed.attempts] != [first[i] for i in range(50)]


def test_repeated_message_draws_afresh() -> None:
    model = FaultyChatModel(ScriptedChatModel(default="fine"), fail_rate=0.5, seed=0)
    kinds = set()
    for _ in range(40):
        try:
            model.invoke("the very same question")
            kinds.add("ok")
        except InjectedFault:
            kinds.add("error")
    assert kinds == {"ok", "error"}


def test_fault_rates_are_validated() -> None:
    with pytest.raises(UserError, match="sum to at most 1"):
        FaultyChatModel(ScriptedChatModel(default="x"), fail_rate=0.6, garbage_rate=0.6)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        FaultyChatModel(ScriptedChatModel(default="x"), timeout_rate=-0.1)


async def test_hang_is_cancelled_by_the_callers_timeout_and_recorded() -> None:
    model = FaultyChatModel(ScriptedChatModel(default="x"), timeout_rate=1.0, hang_s=30.0)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model.ainvoke("hello"), 0.1)
    assert time.perf_counter() - started < 2.0
    [attempt] = model.attempts
    assert attempt.fault == "timeout" and attempt.cancelled and model.in_flight == 0
    short = FaultyChatModel(ScriptedChatModel(default="x"), timeout_rate=1.0, hang_s=0.05)
    with pytest.raises(TimeoutError, match="no reply within"):
        await short.ainvoke("hello")  # without a caller timeout the hang ends as a client timeout


# -- bounded retries with backoff -----------------------------------------------------------------------
@pytest.mark.parametrize("attempts", [1, 3, 5])
async def test_retries_are_bounded_and_name_every_error(attempts: int) -> None:
    model = FaultyChatModel(ScriptedChatModel(default="x"), fail_rate=1.0)
    wrapped = with_retries(model, attempts=attempts, backoff=0.001)
    with pytest.raises(RetriesExhausted) as info:
        await wrapped.ainvoke("q")
    assert len(model.attempts) == attempts == info.value.attempts == len(info.value.errors)
    assert all("InjectedFault" in e for e in info.value.errors)
    stats = wrapped.stats
    assert (stats.calls, stats.attempts, stats.retries, stats.gave_up) == (1, attempts, attempts - 1, 1)


def test_sync_path_retries_and_bounds_hung_attempts() -> None:
    model = FaultyChatModel(ScriptedChatModel(default="x"), timeout_rate=1.0, hang_s=0.5)
    wrapped = with_retries(model, attempts=2, backoff=0.001, timeout=0.05)
    started = time.perf_counter()
    with pytest.raises(RetriesExhausted, match="2 attempt"):
        wrapped.invoke("q")
    assert time.perf_counter() - started < 0.45  # neither hang was waited out
    assert wrapped.stats.timeouts == 2
    ok = with_retries(FaultyChatModel(ScriptedChatModel(default="fine"), fail_rate=0.5, seed=2), attempts=20,
                      backoff=0.0)
    assert all(ok.invoke(f"q{i}").content == "fine" for i in range(20))
    assert ok.stats.retries > 0 and ok.stats.gave_up == 0


def test_backoff_doubles_is_capped_and_jittered() -> None:
    wrapped = with_retries(ScriptedChatModel(default="x"), backoff=0.1, max_backoff=0.5, jitter=0.2, seed=5)
    delays = [wrapped.delay(k) for k in range(1, 7)]
    bases = [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert all(b <= d <= b * 1.2 for d, b in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jitter: no two sleeps alike
    twin = with_retries(ScriptedChatModel(default="x"), backoff=0.1, max_backoff=0.5, jitter=0.2, seed=5)
    assert [twin.delay(k) for k in range(1, 7)] == delays  # seeded


async def test_backoff_is_actually_slept() -> None:
    model = FaultyChatModel(ScriptedChatModel(default="x"), fail_rate=1.0)
    wrapped = with_retries(model, attempts=4, backoff=0.05, jitter=0.0)
    started = time.perf_counter()
    with pytest.raises(RetriesExhausted):
        await wrapped.ainvoke("q")
    assert time.perf_counter() - started >= 0.05 + 0.1 + 0.2 - 0.01
    gaps = [b.started - a.started for a, b in zip(model.attempts, model.attempts[1:], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2]


async def test_developer_errors_and_cancellation_are_not_retried() -> None:
    script = ScriptedChatModel(["only one"])
    wrapped = with_retries(script, attempts=5, backoff=0.001)
    await wrapped.ainvoke("q")
    with pytest.raises(UserError, match="script exhausted"):
        await wrapped.ainvoke("q")
    assert len(script.calls) == 2 and wrapped.stats.retries == 0
    hanging = FaultyChatModel(ScriptedChatModel(default="x"), timeout_rate=1.0, hang_s=30.0)
    task = asyncio.ensure_future(with_retries(hanging, attempts=5).ainvoke("q"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(hanging.attempts) == 1 and hanging.in_flight == 0


def test_bad_retry_settings_raise() -> None:
    with pytest.raises(UserError, match="attempts"):
        with_retries(ScriptedChatModel(default="x"), attempts=0)
    with pytest.raises(UserError, match="timeout"):
        with_retries(ScriptedChatModel(default="x"), timeout=0)


# -- workflows and canvas episodes ------------------------------------------------------------------------
def test_interpreter_records_an_executor_failure_as_the_runs_error() -> None:
    from flowsteer.workflow.dsl import parse

    model = FaultyChatModel(SimulatedExecutor(), fail_rate=1.0)
    result = Interpreter(model).run(parse("Plan -> Custom -> Format"), Task("What is 2 + 2?"))
    assert not result.ok and "InjectedFault" in (result.error or "") and "Plan" in (result.error or "")
    assert result.answer == "" and [t.operator for t in result.trace] == []


@pytest.mark.parametrize("with_retry", [False, True])
def test_canvas_episodes_finish_and_show_executor_errors(with_retry: bool) -> None:
    tasks = math_tasks(6)
    faulty = faulty_executor(tasks, seed=11, hang_s=30.0 if with_retry else 0.2)
    executor = retrying(faulty) if with_retry else faulty
    director = Director(policy_director(), config=DirectorConfig(max_turns=20, fallback=False))
    errors_seen = 0
    for task in tasks:
        canvas = Canvas(executor, config=CanvasConfig(max_turns=20))
        trajectory = director.run(task, canvas)
        assert canvas.done and trajectory.stop_reason in ("finish", "max_turns")
        assert canvas.turn <= 20
        for info in canvas.history:
            ex = info.execution
            if ex is not None and (ex.error or ex.node_errors):
                errors_seen += 1
                failure = ex.error or ex.node_errors[0].result.error or ""
                shown = [r.feedback for r in trajectory.turns if r.feedback]
                assert any("[Error]" in f for f in shown), "an execution error must reach the director's feedback"
                assert failure
    faults = faulty.faults
    assert faults["error"] + faults["timeout"] + faults["garbage"] > 0
    if not with_retry:
        assert errors_seen > 0  # raised faults abort runs, garbage leaves node errors: all visible
    else:
        assert isinstance(executor, RetryingChatModel) and executor.stats.retries > 0
        assert executor.stats.max_attempts_per_call <= 4


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_director_arun_many_finishes_under_faults_within_concurrency(concurrency: int) -> None:
    tasks = math_tasks(8)
    faulty = faulty_executor(tasks, seed=5)
    executor = retrying(faulty, attempts=3)
    gauge = FaultyChatModel(policy_director(latency=0.002))  # no faults: counts director calls in flight
    director = Director(gauge, config=DirectorConfig(max_turns=20, fallback=False))
    started = time.perf_counter()
    trajectories = await director.arun_many(tasks, executor, concurrency=concurrency)
    assert len(trajectories) == 8 and [t.task.id for t in trajectories] == [t.id for t in tasks]
    assert all(t.stop_reason in ("finish", "max_turns") for t in trajectories)
    assert 1 <= gauge.max_in_flight <= concurrency  # one director call per episode at a time
    if concurrency > 1:
        assert gauge.max_in_flight > 1
    # one episode runs at most the two branches of its one parallel block at once
    assert faulty.max_in_flight <= 2 * concurrency and faulty.in_flight == 0
    stats = executor.stats
    assert stats.retries > 0 and stats.max_attempts_per_call <= 3 and stats.attempts == len(faulty.attempts)
    gave_up = [t for t in trajectories for i in (t.execution,) if i is not None and i.error]
    for t in gave_up:
        assert "failed after 3 attempt" in (t.execution.error or "")
    assert time.perf_counter() - started < 100


async def test_episode_whose_every_executor_call_fails_still_ends() -> None:
    executor = retrying(FaultyChatModel(SimulatedExecutor(), fail_rate=0.5, timeout_rate=0.5), attempts=2)
    director = Director(policy_director(), config=DirectorConfig(max_turns=20, fallback=False))
    trajectory = await director.arun(Task("What is 3 + 4?"), executor)
    assert trajectory.stop_reason in ("finish", "max_turns")
    assert trajectory.answer == "" and trajectory.execution is not None
    assert "failed after 2 attempt" in (trajectory.execution.error or "")
    assert any("failed after 2 attempt" in r.feedback for r in trajectory.turns)


# -- evaluations -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["io", WORKFLOW_TEMPLATE])
def test_eval_finishes_and_records_errors_in_the_results_file(tmp_path: Path, baseline: str) -> None:
    tasks = math_tasks(12)
    faulty = faulty_executor(tasks, seed=2, hang_s=0.2)
    summary = evaluate(tasks, executor=faulty, baseline=baseline, out_dir=tmp_path, concurrency=4, cache=False)
    assert summary.ran == 12
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(x["task_id"] for x in lines) == sorted(t.id for t in tasks)
    failed = [x for x in lines if x["errors"]]
    assert failed, "with 30% faults some item must report an error"
    for x in failed:
        assert any(word in " ".join(x["errors"]) for word in ("InjectedFault", "TimeoutError"))
    if baseline == "io":
        assert all(x["status"] == "error" and x["score"] == 0.0 for x in failed)
    assert faulty.max_in_flight <= 4


async def test_eval_with_retries_recovers_most_items_within_concurrency(tmp_path: Path) -> None:
    tasks = math_tasks(16)
    faulty = faulty_executor(tasks, seed=9)
    executor = retrying(faulty, attempts=4)
    summary = await aevaluate(tasks, executor=executor, baseline=WORKFLOW_TEMPLATE, out_dir=tmp_path,
                              concurrency=3, cache=False)
    records = read_results(tmp_path / "results.jsonl")
    assert len(records) == 16 and summary.ran == 16
    aborted = [r for r in records if r.errors]
    # P(4 raised faults in a row) = 0.2^4: a handful of runs at most are lost among ~16 x 5 calls
    assert len(aborted) <= 2
    assert executor.stats.retries > 0 and executor.stats.max_attempts_per_call <= 4
    assert faulty.max_in_flight <= 3  # a sequential template: one executor call per running item
    # errors of items that gave up say how many attempts were made
    assert all("failed after 4 attempt" in r.errors[0] for r in aborted)


# -- a faulty director ----------------------------------------------------------------------------------------
async def test_director_backend_faults_need_retries_to_finish_the_batch() -> None:
    """Director calls are not retried by the loop: by default (``on_error="record"``) a raised call
    ends only its own episode with ``stop_reason="error"``; ``on_error="raise"`` aborts the batch.
    Wrapped with :func:`with_retries` (no generation kwargs are lost for fakes) every episode ends."""
    tasks = math_tasks(6)
    executor = SimulatedExecutor({t.question: t.answer or "" for t in tasks}, skill=0.8)
    raising = FaultyChatModel(policy_director(), fail_rate=0.08, seed=4)
    bare = Director(raising, config=DirectorConfig(max_turns=20, fallback=False))
    recorded = await bare.arun_many(tasks, executor, concurrency=3)
    assert len(recorded) == 6 and [t.task.id for t in recorded] == [t.id for t in tasks]  # order kept
    errored = [t for t in recorded if t.stop_reason == "error"]
    finished = [t for t in recorded if t.stop_reason != "error"]
    assert errored and finished  # the faults hit some episodes, the others ran to their end
    assert all(t.error and t.error.startswith("InjectedFault") for t in errored)
    assert all(t.stop_reason in ("finish", "max_turns") and t.error is None for t in finished)
    with pytest.raises(InjectedFault):
        await Director(FaultyChatModel(policy_director(), fail_rate=0.3, seed=4),
                       config=DirectorConfig(max_turns=20, fallback=False)).arun_many(
            tasks, executor, concurrency=3, on_error="raise")
    flaky = FaultyChatModel(policy_director(), fail_rate=0.2, timeout_rate=0.1, hang_s=30.0, seed=4)
    wrapped = with_retries(flaky, attempts=8, backoff=0.001, max_backoff=0.01, timeout=0.2)
    director = Director(wrapped, config=DirectorConfig(max_turns=20, fallback=False))
    trajectories = await director.arun_many(tasks, executor, concurrency=3)
    assert len(trajectories) == 6 and all(t.stop_reason in ("finish", "max_turns") for t in trajectories)
    assert all(t.error is None for t in trajectories)
    assert wrapped.stats.retries > 0 and wrapped.stats.gave_up == 0
