"""Hostile programs through the whole pipeline, not just the sandbox (issue 9).

Ten representative attacks from :mod:`test_sandbox_adversarial` (its ``ATTACKS`` table) each run as

(a) the program a scripted executor returns to the Programmer operator, on a math and a code task,
(b) the candidate of the Test operator on a code task with public tests,
(c) the answer :func:`flowsteer.scoring.score` grades against hidden tests,
(d) the code a Programmer node gets inside a Canvas episode.

Every run must be contained (one sandbox run within its timeout + 2 s), leave this process healthy
and no sandboxed process behind, keep the planted ``OPENAI_API_KEY`` out of every output, error,
feedback and score detail, and come back as a value: a failed program is an operator error, a failed
check or a zero score, which the canvas shows as a structured ``[Error]`` with a ``[Hint]``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

import pytest
from test_sandbox_adversarial import ATTACKS, Attack, _strength

from flowsteer.canvas import Canvas, CanvasConfig
from flowsteer.operators.base import OperatorCall, OperatorContext, OperatorResult
from flowsteer.operators.registry import default_registry
from flowsteer.sandbox import Sandbox, SandboxLimits
from flowsteer.scoring import score
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel
from flowsteer.workflow.interpreter import Interpreter

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 1.0
SLACK = 2.0
KEY = f"sk-pipeline-{uuid.uuid4().hex}"
CHOSEN = ("infinite_loop", "fork_bomb", "memory_bomb", "huge_stdout", "read_parent_env", "write_tmp_outside",
          "kill_parent", "os_exit", "close_stdout_stderr", "binary_garbage")
PICKED = [a for a in ATTACKS if a.name in CHOSEN]
# Attacks whose program cannot finish cleanly: every stage must report a failure.
MUST_FAIL = {a.name for a in PICKED if "ok" not in a.statuses}

MATH = Task("What is 6 * 7?", "math", "m1", "42", source="toy")
CODE = Task("Write add(a, b) returning the sum of a and b.\nThe solution defines the function add.", "code", "c1",
            entry_point="add", public_tests="assert add(1, 2) == 3\n", hidden_tests="assert add(2, 2) == 4\n",
            source="toy")
ADD = "\n\ndef add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def box():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        assert os.environ["OPENAI_API_KEY"] == KEY  # what read_parent_env must not see
        sandbox = Sandbox(SandboxLimits(timeout_s=TIMEOUT, memory_mb=256, max_processes=24))
        yield sandbox
        sandbox.close()


def attack_code(attack: Attack) -> str:
    token = f"{uuid.uuid4().int % 10**9:09d}"
    return attack.code.replace("@TOKEN@", token).replace("@PYTEST_PID@", str(os.getpid()))


def fenced(code: str) -> str:
    return f"Here is the program.\n```python\n{code}\n```"


def text_of(value: Any) -> str:
    return repr(value)


def assert_healthy(box: Sandbox, started: float, runs: int = 1) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < runs * TIMEOUT + SLACK, f"took {elapsed:.1f}s for {runs} sandbox run(s)"
    assert os.getppid() > 0 and threading.main_thread().is_alive()
    assert box.running_processes() == []


def run_operator(name: str, box: Sandbox, code: str, task: Task, value: str | None = None) -> OperatorResult:
    context = OperatorContext(ScriptedChatModel(default=fenced(code)), box)
    operator = default_registry().get(name).factory(context)
    call = OperatorCall(task, value, prompt="Compute the answer with Python.", params={"attempts": 1})
    return asyncio.run(operator.arun(call))


@pytest.fixture(params=PICKED, ids=[a.name for a in PICKED])
def attack(request, box) -> Attack:
    chosen: Attack = request.param
    if chosen.needs and not _strength(box)[chosen.needs]:
        pytest.skip(f"'{chosen.needs}' attacks need root (uid isolation) or bwrap; this machine has neither")
    return chosen


def test_programmer_runs_the_attack_as_a_value(attack: Attack, box: Sandbox) -> None:
    code = attack_code(attack)
    for task, program in ((MATH, code), (CODE, code + ADD)):
        started = time.monotonic()
        result = run_operator("Programmer", box, program, task)
        assert_healthy(box, started)
        assert isinstance(result, OperatorResult) and KEY not in text_of(result)
        if attack.name in MUST_FAIL:
            assert result.error and result.error.startswith("program failed after 1 attempt(s)"), result


def test_test_operator_checks_the_attack_as_a_candidate(attack: Attack, box: Sandbox) -> None:
    started = time.monotonic()
    result = run_operator("Test", box, "", CODE, value=fenced(attack_code(attack) + ADD))
    assert_healthy(box, started)
    assert result.error is None and result.verdict is not None and result.feedback
    assert KEY not in text_of(result)
    if attack.name in MUST_FAIL:
        assert result.verdict is False and result.feedback.startswith("Public tests failed"), result


def test_scorer_grades_the_attack_on_hidden_tests(attack: Attack, box: Sandbox) -> None:
    started = time.monotonic()
    graded = score(CODE, fenced(attack_code(attack) + ADD), sandbox=box)
    assert_healthy(box, started)
    assert 0.0 <= graded.value <= 1.0 and KEY not in text_of(graded.details)
    if attack.name in MUST_FAIL:
        assert graded.value == 0.0 and not graded.correct


def test_canvas_turns_the_attack_into_feedback(attack: Attack, box: Sandbox) -> None:
    executor = ScriptedChatModel(default=fenced(attack_code(attack)))
    canvas = Canvas(Interpreter(executor, sandbox=box), config=CanvasConfig(max_turns=4))
    canvas.reset(MATH)
    started = time.monotonic()
    obs, done, info = canvas.step("<action>add</action><operator>Programmer</operator>"
                                  "<prompt>Compute 6 * 7 with a Python program.</prompt>")
    assert_healthy(box, started, runs=2)  # the Programmer retries once by default
    assert info.accepted and not done and info.execution is not None
    assert obs.text.startswith("<feedback>\n") and obs.text.endswith("\n</feedback>")
    assert "[Status]: Success" in obs.text and "[Current DSL]: Programmer" in obs.text
    assert KEY not in obs.text and KEY not in text_of(info.execution)
    if attack.name in MUST_FAIL:
        assert info.execution.node_errors, info.execution
        error_at = obs.text.index("[Error]:")
        assert "program failed after 2 attempt(s)" in obs.text[error_at:]
        assert obs.text.index("[Hint]:") > error_at
    # the episode goes on: the director can react to the feedback
    obs, _, info = canvas.step("<action>modify</action><target>node_1</target><operator>Custom</operator>")
    assert info.accepted and "[Status]: Awaiting Prompt" in obs.text


def test_the_pipeline_sample_is_representative() -> None:
    assert {a.name for a in PICKED} == set(CHOSEN)
    assert MUST_FAIL >= {"infinite_loop", "memory_bomb", "os_exit", "close_stdout_stderr"}
