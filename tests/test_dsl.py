"""The DSL: the paper's examples, nesting, tolerance, error positions, and round-trips."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings

from flowsteer.errors import DSLParseError
from flowsteer.testing.strategies import workflows
from flowsteer.workflow.dsl import parse, render
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Step, Workflow
from flowsteer.workflow.validation import validate

PAPER = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"

CANONICAL = [
    PAPER,
    "(Review -> Revise) * 3",
    "Plan -> Programmer -> (Review -> Revise) * 2 -> Verify -> Format",
    "Plan -> Decompose -> [Programmer, Custom] -> Aggregate -> Verify -> Format",
    "Verify ? (Revise -> Format) : done",
    "[Plan -> Programmer, Custom]",
    "Test ? Programmer : Format",
    "Verify ? (Review ? Revise : done) : (Revise) * 2",
    "[Verify ? Revise : done, Custom -> Test ? Programmer : done] -> ScEnsemble",
    "((Programmer -> Test ? Revise : done) * 2 -> Verify) * 3",
    "Verify ? [Programmer, Custom] : (Format -> Verify ? Revise : done)",
    "Plan",
    "",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_strings_round_trip(text, toy_registry):
    assert render(parse(text)) == text
    assert render(parse(text, toy_registry)) == text


def test_paper_example_structure():
    wf = parse(PAPER)
    plan, par, ens, cond, fmt = wf.steps
    assert plan == OperatorNode("Plan", id="node_1")
    assert isinstance(par, Parallel) and par.id == "node_2"
    assert [[s.operator for s in b] for b in par.branches] == [["Programmer"], ["Custom"]]  # type: ignore[union-attr]
    assert ens == OperatorNode("ScEnsemble", id="node_5")
    assert isinstance(cond, Conditional)
    assert (cond.id, cond.check) == ("node_6", OperatorNode("Verify", id="node_7"))
    assert cond.on_fail == (OperatorNode("Revise", id="node_8"),) and cond.on_pass == ()
    assert fmt == OperatorNode("Format", id="node_9")
    assert wf.next_id == 10


def test_paper_loop_example():
    (loop,) = parse("(Review -> Revise) * 3").steps
    assert loop == Loop((OperatorNode("Review", id="node_2"), OperatorNode("Revise", id="node_3")), 3, id="node_1")


def test_multi_step_conditional_branches_and_parallel_chains():
    (cond,) = parse("Verify ? (Revise -> Format) : (Plan -> Custom)").steps
    assert isinstance(cond, Conditional)
    assert [s.operator for s in cond.on_fail] == ["Revise", "Format"]  # type: ignore[union-attr]
    assert [s.operator for s in cond.on_pass] == ["Plan", "Custom"]  # type: ignore[union-attr]
    (par,) = parse("[Plan -> Programmer, Custom]").steps
    assert isinstance(par, Parallel)
    assert [len(b) for b in par.branches] == [2, 1]


def test_grouping_without_count_only_groups():
    assert render(parse("Plan -> (Programmer -> (Verify)) -> Format")) == "Plan -> Programmer -> Verify -> Format"
    # the spec's "RECOMMENDED" pattern wraps a conditional in parentheses
    assert render(parse("Plan -> Programmer -> (Verify ? Revise : done) -> Format")) == (
        "Plan -> Programmer -> Verify ? Revise : done -> Format"
    )


def test_parsed_workflow_is_a_normal_workflow(toy_registry):
    wf = parse(PAPER, toy_registry)
    assert isinstance(wf, Workflow)
    assert wf.ids() == [f"node_{i}" for i in range(1, 10)]
    assert validate(wf, toy_registry) == []
    assert str(wf) == PAPER


def test_tolerant_of_whitespace_case_and_arrow_spellings(toy_registry):
    messy = "  plan->[ PROGRAMMER ,custom ]  →scensemble->VERIFY?revise:DONE ->format  "
    assert render(parse(messy, toy_registry)) == PAPER
    assert render(parse("(review->revise)×3", toy_registry)) == "(Review -> Revise) * 3"
    # without a registry the default one spells the names it knows; others are kept as written
    assert render(parse("plan -> MyOp")) == "Plan -> MyOp"


def test_unknown_operator_names_position_and_valid_names(toy_registry):
    text = "Plan -> [Programmer, Coder] -> ScEnsemble"
    with pytest.raises(DSLParseError) as info:
        parse(text, toy_registry)
    err = info.value
    assert err.position == text.index("Coder")
    assert "unknown operator 'Coder'" in str(err)
    assert "valid operators: Plan, Decompose, Programmer" in str(err)
    assert f"at position {err.position}" in str(err)


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("(Review -> Revise) * 11", 21, "loop count 11 is out of range; use 1..10"),
        ("(Review) * 0", 11, "use 1..10"),
        ("(Review) * -2", 11, "use 1..10"),
        ("(Review) * x", 11, "expected a loop count (1..10)"),
        ("Plan -> ", 8, "expected an operator, '[' or '('"),
        ("Plan Format", 5, "expected '->' or end of text"),
        ("[Programmer]", 0, "at least 2 branches"),
        ("[Programmer, Custom", 19, "to close the parallel block opened at position 0"),
        ("(Review -> Revise * 3", 18, "expected ')'"),
        ("Verify ? Revise", 15, "write ': done' when nothing runs on pass"),
        ("Verify ? done : Revise", 9, "cannot be 'done'"),
        ("Plan -> done", 8, "'done' can only be a conditional's pass branch"),
        ("(Plan -> Verify) ? Revise : done", 17, "a condition must be a single checker operator"),
        ("Plan -> ()", 9, "empty parentheses"),
        ("Plan & Format", 5, "unexpected character '&'"),
        ("Verify ? Review ? Revise : done : done", 16, "expected ':'"),
    ],
)
def test_parse_errors_name_the_position(text, position, fragment):
    with pytest.raises(DSLParseError) as info:
        parse(text)
    assert info.value.position == position, str(info.value)
    assert fragment in str(info.value)
    assert info.value.text == text


def test_render_accepts_chains_and_steps():
    wf = parse(PAPER)
    assert render(wf.steps) == PAPER
    assert render(list(wf.steps[:2])) == "Plan -> [Programmer, Custom]"
    assert render(wf.steps[3]) == "Verify ? Revise : done"
    with pytest.raises(TypeError):
        render(42)  # type: ignore[arg-type]


def _structure(chain: Chain) -> Chain:
    """The chain without prompts and params (the parts the DSL does not carry)."""

    def strip(step: Step) -> Step:
        match step:
            case OperatorNode():
                return OperatorNode(step.operator, id=step.id)
            case Parallel(branches=branches):
                return replace(step, branches=tuple(_structure(b) for b in branches))
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                return replace(step, check=strip(check), on_fail=_structure(on_fail), on_pass=_structure(on_pass))
            case Loop(body=body):
                return replace(step, body=_structure(body))
        raise AssertionError(step)

    return tuple(strip(s) for s in chain)


@pytest.fixture
def generated(toy_registry):
    return workflows(toy_registry, max_steps=6, max_depth=2)


def test_generated_workflows_round_trip(toy_registry, generated):
    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(generated)
    def check(wf: Workflow) -> None:
        text = render(wf)
        reparsed = parse(text, toy_registry)
        assert render(reparsed) == text
        assert _structure(reparsed.steps) == _structure(wf.steps)  # ids too: both pre-order from 1
        assert reparsed.next_id == wf.next_id

    check()


def test_round_trip_with_custom_registered_operators(toy_registry):
    from flowsteer.operators.base import Role
    from flowsteer.operators.registry import OperatorSpec

    registry = toy_registry.copy()
    spec = next(iter(registry))
    registry.register(OperatorSpec("UnitChecker", Role.CHECKING, "checks units", spec.factory))
    registry.register(OperatorSpec("Vote3", Role.ENSEMBLING, "votes", spec.factory))
    seen: set[str] = set()

    @settings(max_examples=60, deadline=None)
    @given(workflows(registry, max_steps=4, max_depth=1))
    def check(wf: Workflow) -> None:
        assert validate(wf, registry) == []
        assert render(parse(render(wf).lower(), registry)) == render(wf)
        seen.update(n.operator for n in wf.operator_nodes())

    check()
    assert seen & {"UnitChecker", "Vote3"}


@pytest.mark.parametrize(("text", "says"), [
    ("Verify ? : done", "missing the operator that runs when Verify fails"),
    ("Verify ?", "missing the operator that runs when Verify fails"),
    ("Verify ? Revise :", "missing its pass branch"),
    ("Verify ? Revise : -> Format", "missing its pass branch"),
])
def test_an_incomplete_conditional_says_what_is_missing_and_shows_the_valid_form(text, says):
    from flowsteer.errors import DSLParseError

    with pytest.raises(DSLParseError, match=says) as err:
        parse(text)
    assert "Verify ? Revise : done" in str(err.value)


def test_operator_names_are_case_insensitive_in_the_parser_and_the_builder_alike():
    from flowsteer.workflow.builder import WorkflowBuilder

    assert parse("custom -> verify ? revise : done").dsl == "Custom -> Verify ? Revise : done"
    builder = WorkflowBuilder()
    builder.add("custom")
    builder.add_conditional("VERIFY", "revise")
    assert builder.build().dsl == "Custom -> Verify ? Revise : done"
