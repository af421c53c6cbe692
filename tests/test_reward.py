"""The CWRPO reward: spec section 8 worked examples, loops earning structure credit, config checks."""

from __future__ import annotations

import pytest

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorSpec
from flowsteer.reward import RewardConfig, compute_reward
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.graph import stats
from flowsteer.workflow.ir import Workflow


def build(registry, *steps) -> Workflow:
    """steps: operator names, ("par", [...]), ("cond", check, on_fail), ("loop", [...], n)."""
    b = WorkflowBuilder(registry=registry)
    for step in steps:
        match step:
            case str():
                b.add(step)
            case ("par", branches):
                b.add_parallel(branches)
            case ("cond", check, on_fail):
                b.add_conditional(check, on_fail)
            case ("loop", body, n):
                b.add_loop(body, n)
    return b.build()


# The spec section 8.2 worked examples (correctness c), built the way the DSL would parse them.
def test_plan_verify_format_is_minus_0_6(toy_registry):
    wf = build(toy_registry, "Plan", "Verify", "Format")
    r = compute_reward(wf, 1.0, registry=toy_registry)
    assert r.diversity == pytest.approx(0.4)
    assert r.total == pytest.approx(-0.6)
    assert (r.checker, r.format, r.min_ops, r.structure, r.released) == (True, True, False, False, False)


@pytest.mark.parametrize("c", [0.0, 0.37, 1.0])
def test_full_structure_releases_the_answer(toy_registry, c):
    wf = build(toy_registry, "Plan", "Decompose", ("par", ["Programmer", "Custom"]), "Aggregate",
               "Verify", "Format")
    r = compute_reward(wf, c, registry=toy_registry)
    assert r.diversity == 1.0
    assert r.released
    assert r.total == pytest.approx(c)
    assert r.operator_count == 7


def test_same_without_brackets_is_minus_0_4(toy_registry):
    wf = build(toy_registry, "Plan", "Decompose", "Programmer", "Custom", "Aggregate", "Verify", "Format")
    r = compute_reward(wf, 1.0, registry=toy_registry)
    assert r.diversity == pytest.approx(0.6)
    assert r.total == pytest.approx(-0.4)
    assert not r.structure and r.min_ops


def test_loop_earns_structure_credit_unlike_the_reference(toy_registry):
    # Plan -> Programmer -> (Review -> Revise) * 2 -> Verify -> Format: 6 operators as written.
    wf = build(toy_registry, "Plan", "Programmer", ("loop", ["Review", "Revise"], 2), "Verify", "Format")
    r = compute_reward(wf, 1.0, registry=toy_registry)
    assert r.operator_count == 6
    assert r.structure and r.released
    assert r.total == pytest.approx(1.0)
    # The reference bug (13.7) is reproducible on request and gives its -0.4.
    bug = compute_reward(wf, 1.0, registry=toy_registry, config=RewardConfig(loops_count_as_structure=False))
    assert bug.total == pytest.approx(-0.4)
    assert not bug.released


def test_recommended_five_operator_pattern_never_releases_by_default(toy_registry):
    # Spec 13.27: Plan -> Programmer -> (Verify ? Revise : done) -> Format has 5 operators.
    wf = build(toy_registry, "Plan", "Programmer", ("cond", "Verify", ["Revise"]), "Format")
    r = compute_reward(wf, 1.0, registry=toy_registry)
    assert r.operator_count == 5
    assert r.diversity == pytest.approx(0.8)
    assert r.total == pytest.approx(-0.2)
    aligned = compute_reward(wf, 1.0, registry=toy_registry, config=RewardConfig(min_operators=5))
    assert aligned.released and aligned.total == pytest.approx(1.0)


def test_empty_workflow_is_minus_one(toy_registry):
    r = compute_reward(Workflow(), 1.0, registry=toy_registry)
    assert r.total == -1.0 and r.diversity == 0.0 and not r.released


def test_user_registered_operator_earns_credit_by_role(toy_registry):
    registry = toy_registry.copy()
    any_factory = toy_registry.get("Verify").factory
    registry.register(OperatorSpec("UnitCheck", Role.CHECKING, "runs unit checks", any_factory))
    registry.register(OperatorSpec("Polish", Role.FORMATTING, "polishes", any_factory))
    wf = build(registry, "Plan", "Programmer", "Custom", ("cond", "UnitCheck", ["Revise"]), "Polish")
    r = compute_reward(wf, 0.5, registry=registry)
    assert r.checker and r.format and r.structure and r.operator_count == 6
    assert stats(wf, registry).has_conditional
    assert compute_reward(wf, 0.5, registry=registry).total == pytest.approx(0.5)


def test_diversity_is_capped_at_one_with_generous_weights(toy_registry):
    wf = build(toy_registry, "Plan", "Decompose", ("par", ["Programmer", "Custom"]), "Aggregate",
               "Verify", "Format")
    cfg = RewardConfig(checker=0.5, format=0.5, min_ops=0.5, structure=0.5)
    assert compute_reward(wf, 0.0, registry=toy_registry, config=cfg).diversity == 1.0


def test_release_threshold_below_one(toy_registry):
    wf = build(toy_registry, "Plan", "Programmer", ("cond", "Verify", ["Revise"]), "Format")
    r = compute_reward(wf, 1.0, registry=toy_registry, config=RewardConfig(release_threshold=0.8))
    assert r.released and r.total == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"checker": -0.1}, "checker"),
        ({"structure": 1.5}, "structure"),
        ({"min_operators": 0}, "min_operators"),
        ({"release_threshold": 0.0}, "release_threshold"),
        ({"checker": 0.1, "format": 0.1, "min_ops": 0.1, "structure": 0.1}, "never be released"),
    ],
)
def test_config_validation_says_how_to_fix(kwargs, fragment):
    with pytest.raises(UserError, match=fragment):
        RewardConfig(**kwargs)


def test_answer_score_out_of_range_is_a_user_error(toy_registry):
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        compute_reward(Workflow(), 1.5, registry=toy_registry)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Plan -> Verify -> Format", -0.6),
        ("Plan -> Decompose -> [Programmer, Custom] -> Aggregate -> Verify -> Format", 1.0),
        ("Plan -> Decompose -> Programmer -> Custom -> Aggregate -> Verify -> Format", -0.4),
        ("Plan -> Programmer -> (Review -> Revise) * 2 -> Verify -> Format", 1.0),
        ("Plan -> Programmer -> Verify ? Revise : done -> Format", -0.2),
    ],
)
def test_worked_examples_from_the_dsl(toy_registry, text, expected):
    dsl = pytest.importorskip("flowsteer.workflow.dsl")
    wf = dsl.parse(text, toy_registry)
    assert compute_reward(wf, 1.0, registry=toy_registry).total == pytest.approx(expected)


async def test_score_and_reward_on_a_math_task(toy_registry):
    from flowsteer.reward import ascore_and_reward, score_and_reward
    from flowsteer.tasks import Task

    wf = build(toy_registry, "Plan", "Programmer", ("loop", ["Review", "Revise"], 2), "Verify", "Format")
    task = Task("What is 6 * 7?", "math", answer="42")
    s, r = score_and_reward(wf, task, "The answer is \\boxed{42}", registry=toy_registry)
    assert s.correct and r.total == pytest.approx(1.0)
    s, r = await ascore_and_reward(wf, task, "41", registry=toy_registry)
    assert not s.correct and r.total == pytest.approx(0.0)


def test_worked_examples_with_the_builtin_registry():
    dsl = pytest.importorskip("flowsteer.workflow.dsl")
    from flowsteer.operators import default_registry

    registry = default_registry()
    loop = dsl.parse("Plan -> Programmer -> (Review -> Revise) * 2 -> Verify -> Format", registry)
    assert compute_reward(loop, 0.5, registry=registry).total == pytest.approx(0.5)
    short = dsl.parse("Plan -> Verify -> Format", registry)
    assert compute_reward(short, 1.0, registry=registry).total == pytest.approx(-0.6)


def test_padding_with_a_repeated_step_earns_nothing(toy_registry):
    # Programmer -> (Verify ? Revise : done) -> Format -> Format -> Format: the reference counted 6
    # operators and released the answer; repeating Format on its own output is padding, counted once.
    padded = build(toy_registry, "Programmer", ("cond", "Verify", ["Revise"]), "Format", "Format", "Format")
    r = compute_reward(padded, 1.0, registry=toy_registry)
    assert r.operator_count == 4
    assert not r.min_ops and not r.released
    assert r.total == pytest.approx(-0.2)
    reference = compute_reward(padded, 1.0, registry=toy_registry, config=RewardConfig(count_repeats=True))
    assert reference.operator_count == 6 and reference.released and reference.total == pytest.approx(1.0)


def test_repeated_rounds_and_separated_repeats_still_count(toy_registry):
    # Two review rounds are two conditionals (real work), and a repeat with a step between counts.
    rounds = build(toy_registry, "Programmer", ("cond", "Verify", ["Revise"]), ("cond", "Verify", ["Revise"]),
                   "Format")
    assert compute_reward(rounds, 1.0, registry=toy_registry).operator_count == 6
    separated = build(toy_registry, "Programmer", "Format", "Programmer", ("cond", "Verify", ["Revise"]),
                      "Format")
    assert compute_reward(separated, 1.0, registry=toy_registry).operator_count == 6
    # Inside a branch and a loop body the same rule holds, per chain.
    nested = build(toy_registry, ("par", ["Programmer", "Programmer"]), ("loop", ["Review", "Review", "Revise"], 2))
    assert compute_reward(nested, 1.0, registry=toy_registry).operator_count == 4
    assert compute_reward(nested, 1.0, registry=toy_registry,
                          config=RewardConfig(count_repeats=True)).operator_count == 5


def test_repeat_penalty_prefers_the_lean_workflow_among_equals(toy_registry):
    lean = build(toy_registry, "Programmer", ("cond", "Verify", ["Revise"]), ("cond", "Verify", ["Revise"]), "Format")
    padded = build(toy_registry, "Programmer", ("cond", "Verify", ["Revise"]), ("cond", "Verify", ["Revise"]),
                   "Format", "Format", "Format")
    paper = RewardConfig()
    assert compute_reward(lean, 1.0, registry=toy_registry, config=paper).total == pytest.approx(1.0)
    assert compute_reward(padded, 1.0, registry=toy_registry, config=paper).total == pytest.approx(1.0)
    costed = RewardConfig(repeat_penalty=0.1)
    r = compute_reward(padded, 1.0, registry=toy_registry, config=costed)
    assert r.repeated_steps == 2 and r.total == pytest.approx(0.8)
    assert compute_reward(lean, 1.0, registry=toy_registry, config=costed).total == pytest.approx(1.0)
    # never below the reward's floor
    empty_ish = build(toy_registry, "Format", "Format", "Format", "Format")
    assert compute_reward(empty_ish, 0.0, registry=toy_registry, config=RewardConfig(repeat_penalty=1.0)).total == -1.0
    with pytest.raises(UserError, match="repeat_penalty"):
        RewardConfig(repeat_penalty=-0.1)
