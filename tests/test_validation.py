"""validate(): every violation kind, all reported at once, each message saying how to fix it."""

from __future__ import annotations

import pytest

from flowsteer.workflow.dsl import parse
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
from flowsteer.workflow.validation import Violation, validate


def codes(violations: list[Violation]) -> list[str]:
    return [v.code for v in violations]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format",
        "(Review -> Revise) * 3",
        "[[Programmer, Custom] -> Aggregate, AnswerGenerate] -> ScEnsemble",
        "Test ? (Programmer -> Test) : Format",
        "ScEnsemble -> Format",
    ],
)
def test_valid_workflows_have_no_violations(text, toy_registry):
    assert validate(parse(text, toy_registry), toy_registry) == []


@pytest.mark.parametrize(
    ("steps", "code", "fix"),
    [
        ((OperatorNode("Nope", id="n1"),), "unknown_operator", "valid operators: Plan, Decompose"),
        ((Parallel(((OperatorNode("Programmer"),), (OperatorNode("ScEnsemble"),))),),
         "ensembler_in_parallel", "place it right after the parallel block"),
        ((Parallel(((OperatorNode("Programmer"),),)),), "parallel_too_small", "add a branch"),
        ((Parallel(((OperatorNode("Programmer"),), ())),), "empty_branch", "at least one operator"),
        ((Conditional(OperatorNode("Plan"), (OperatorNode("Revise"),)),),
         "condition_not_checker", "use a checker (Test, Review, Verify)"),
        ((Conditional(OperatorNode("Verify"), ()),), "empty_on_fail", "Verify ? Revise : done"),
        ((Loop((), 3),), "empty_loop", "(Review -> Revise) * 3"),
        ((Loop((OperatorNode("Review"),), 0),), "loop_count", "use 1..10"),
        ((Loop((OperatorNode("Review"),), 11),), "loop_count", "use 1..10"),
        (("Plan",), "not_a_step", "OperatorNode, Parallel, Conditional or Loop"),
        ((OperatorNode("Plan", id="node_1"), OperatorNode("Format", id="node_1")),
         "duplicate_id", "build workflows with WorkflowBuilder"),
    ],
)
def test_each_violation_kind_names_the_fix(steps, code, fix, toy_registry):
    violations = validate(Workflow(steps), toy_registry)
    assert codes(violations) == [code]
    assert fix in violations[0].message


def test_every_violation_is_returned_at_once(toy_registry):
    wf = Workflow((
        OperatorNode("Nope", id="node_1"),
        Parallel(((OperatorNode("Aggregate", id="node_3"),),), id="node_2"),
        Conditional(OperatorNode("Format", id="node_5"), (), id="node_4"),
        Loop((), 12, id="node_6"),
        OperatorNode("Plan", id="node_1"),
    ))
    violations = validate(wf, toy_registry)
    assert sorted(codes(violations)) == sorted([
        "unknown_operator", "ensembler_in_parallel", "parallel_too_small", "condition_not_checker",
        "empty_on_fail", "empty_loop", "loop_count", "duplicate_id",
    ])
    by_code = {v.code: v for v in violations}
    assert by_code["ensembler_in_parallel"].node_id == "node_3"
    assert by_code["loop_count"].node_id == "node_6"
    assert str(by_code["empty_loop"]).startswith("node_6: ")


def test_ensembler_may_follow_a_nested_parallel_inside_a_branch(toy_registry):
    inner = Parallel(((OperatorNode("Programmer"),), (OperatorNode("Custom"),)))
    wf = Workflow((Parallel(((inner, OperatorNode("ScEnsemble")), (OperatorNode("Custom"),))),))
    assert validate(wf, toy_registry) == []
    misplaced = Workflow((Parallel(((OperatorNode("Custom"), OperatorNode("ScEnsemble")), (OperatorNode("Plan"),))),))
    assert codes(validate(misplaced, toy_registry)) == ["ensembler_in_parallel"]


def test_nested_violations_inside_conditionals_and_loops(toy_registry):
    wf = Workflow((
        Loop((Conditional(OperatorNode("Verify"), (OperatorNode("Bogus"),)),), 3),
        Parallel(((Loop((OperatorNode("Aggregate"),), 2),), (OperatorNode("Custom"),))),
    ))
    assert sorted(codes(validate(wf, toy_registry))) == ["ensembler_in_parallel", "unknown_operator"]


def test_validate_accepts_a_bare_chain(toy_registry):
    assert codes(validate((OperatorNode("Nope"),), toy_registry)) == ["unknown_operator"]


def test_non_integer_loop_count_is_a_violation(toy_registry):
    wf = Workflow((Loop((OperatorNode("Review"),), 2.5),))  # type: ignore[arg-type]
    assert codes(validate(wf, toy_registry)) == ["loop_count"]


def test_an_operator_with_nothing_to_do_on_the_task_kind_is_refused_everywhere():
    """`Test ? Programmer : done` on a math task would re-run Programmer every time (Test has no
    program to check): validation with the kind, the interpreter, the canvas and the grammar refuse it."""
    import asyncio

    from flowsteer.canvas import Canvas
    from flowsteer.constrain import action_grammar
    from flowsteer.errors import WorkflowValidationError
    from flowsteer.operators.registry import default_registry
    from flowsteer.tasks import Task
    from flowsteer.testing import SimulatedExecutor
    from flowsteer.workflow.interpreter import Interpreter

    registry = default_registry()
    workflow = parse("Programmer -> Test ? Programmer : done -> Format", registry)
    assert validate(workflow, registry) == []  # kind unknown: allowed
    assert validate(workflow, registry, kind="code") == []
    (problem,) = validate(workflow, registry, kind="math")
    assert problem.code == "wrong_task_kind" and "Verify" in problem.message and "Review" in problem.message
    math = Task("What is 2 + 3?", kind="math", answer="5")
    executor = SimulatedExecutor({math.question: "5"}, skill=1.0)
    with pytest.raises(WorkflowValidationError, match="nothing to do on a math task"):
        asyncio.run(Interpreter(executor).arun(workflow, math))
    from flowsteer.canvas import CanvasConfig

    canvas = Canvas(executor, config=CanvasConfig(write_prompts=False))
    canvas.reset(math)
    canvas.step("<action>add</action><operator>Programmer</operator>")
    obs, _, info = canvas.step("<action>add</action><structure>conditional</structure><condition>Test"
                               "</condition><true>Programmer</true><false>done</false>")
    assert not info.accepted and "nothing to do on a math task" in info.message and obs.dsl == "Programmer"
    grammar = action_grammar(registry, canvas.workflow, kind="math").to_json()
    assert "Test" not in grammar and "Verify" in grammar
    assert "Test" in action_grammar(registry, canvas.workflow, kind="code").to_json()


def test_task_kinds_must_be_a_set_of_kinds():
    from flowsteer.errors import UserError
    from flowsteer.operators import OperatorSpec, Role
    from flowsteer.operators.builtins import builtin_specs

    factory = builtin_specs()[0].factory
    with pytest.raises(UserError, match="task_kinds must be a set"):
        OperatorSpec("Checker", Role.CHECKING, "checks", factory, task_kinds="code")  # type: ignore[arg-type]
    assert OperatorSpec("Checker", Role.CHECKING, "checks", factory, task_kinds={"code"}).applies_to("code")
