"""Graceful fallback: when an episode leaves no finishable workflow, a named template answers, marked."""

from __future__ import annotations

import pytest

from flowsteer.canvas import Canvas, CanvasConfig, FinishConstraints
from flowsteer.director.trajectory import Trajectory
from flowsteer.errors import UserError
from flowsteer.fallback import (
    FALLBACK_TEMPLATES,
    apply_fallback,
    fallback_reason,
    run_fallback,
    select_template,
)
from flowsteer.operators.base import Usage
from flowsteer.operators.registry import default_registry
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import Interpreter
from flowsteer.workflow.ir import Workflow

MATH = Task("Natalia sold 48 clips in April and half as many in May. How many in total?", answer="72", id="m1")
CODE = Task("Write add(a, b) returning the sum.", kind="code", entry_point="add",
            public_tests="assert add(1, 2) == 3", id="c1")
QA = Task("Paris is the capital of France. What is the capital of France?", kind="qa", answer="Paris", id="q1")


def _trajectory(task: Task, workflow: Workflow, stop_reason: str, execution=None) -> Trajectory:
    return Trajectory(task=task, turns=[], workflow=workflow, answer=execution.answer if execution else "",
                      stop_reason=stop_reason, execution=execution, usage=Usage())


@pytest.mark.parametrize("task", [MATH, CODE, QA])
def test_each_kind_has_a_template_that_runs_and_could_finish(task):
    executor = SimulatedExecutor(seed=1)
    result = run_fallback(task, executor, reason="test")
    assert result.name == f"{task.kind}-default"
    assert result.workflow.dsl == parse(FALLBACK_TEMPLATES[result.name], default_registry()).dsl
    assert result.execution.error is None and result.answer.strip()
    relaxed = FinishConstraints(require_format_when_verbose=False)
    assert relaxed.check(result.workflow, task, result.execution, default_registry()) == []
    assert result.label == f"{task.kind}-default: test"


def test_code_template_runs_the_public_tests():
    _, workflow = select_template(CODE)
    assert "Test" in [n.operator for n in workflow.operator_nodes()]


def test_reasons():
    executor = SimulatedExecutor()
    good = parse(FALLBACK_TEMPLATES["math-default"], default_registry())
    ran = Interpreter(executor).run(good, MATH)
    assert fallback_reason("finished", Workflow(), None, MATH) is None
    assert "canvas is empty" in fallback_reason("max_turns", Workflow(), None, MATH)
    assert "never ran" in fallback_reason("max_turns", good, None, MATH)
    small = parse("Plan -> Custom", default_registry())
    small_run = Interpreter(executor).run(small, MATH)
    assert "not finishable" in fallback_reason("max_turns", small, small_run, MATH)
    relaxed = FinishConstraints(require_format_when_verbose=False)
    assert fallback_reason("max_turns", good, ran, MATH, finish=relaxed) is None  # it can stand as is


def test_apply_marks_the_trajectory_and_keeps_the_designed_workflow():
    executor = SimulatedExecutor(seed=2)
    designed = parse("Plan -> Custom", default_registry())
    before = _trajectory(MATH, designed, "max_turns", Interpreter(executor).run(designed, MATH))
    after = apply_fallback(before, executor)
    assert after.fallback.startswith("math-default: episode ended without finish (max_turns)")
    assert after.designed == designed and after.workflow.dsl == parse(FALLBACK_TEMPLATES["math-default"]).dsl
    assert after.answer == after.execution.answer and after.answer.strip()
    assert after.executor_usage.calls > 0
    assert after.to_dict()["fallback"] == after.fallback


def test_finished_trajectories_are_left_alone():
    executor = SimulatedExecutor()
    done = _trajectory(MATH, parse("Plan -> Custom"), "finished", None)
    assert apply_fallback(done, executor) is done


def test_apply_after_a_real_canvas_episode_of_refusals():
    executor = SimulatedExecutor()
    canvas = Canvas(executor, config=CanvasConfig(max_turns=3))
    canvas.reset(MATH)
    for _ in range(3):
        obs, done, info = canvas.step("<action>finish</action>")  # refused every time: empty canvas
        assert not info.accepted
    assert done and canvas.stop_reason == "max_turns"
    traj = _trajectory(MATH, canvas.workflow, canvas.stop_reason, canvas.last_execution)
    after = apply_fallback(traj, canvas)  # the canvas's own interpreter runs the template
    assert after.fallback.startswith("math-default") and "empty" in after.fallback
    assert after.designed == Workflow()


def test_named_and_custom_templates():
    name, workflow = select_template(MATH, "qa-default")
    assert name == "qa-default" and workflow.operator_nodes()[0].operator == "Plan"
    # DirectorConfig.fallback_templates maps task kinds to DSL; that works too
    name, workflow = select_template(MATH, templates={"math": "Plan -> Programmer -> Verify ? Revise : done -> Format"})
    assert name == "math-default" and len(workflow.operator_nodes()) == 5
    with pytest.raises(UserError, match="no fallback template named 'nope'"):
        select_template(MATH, "nope")
