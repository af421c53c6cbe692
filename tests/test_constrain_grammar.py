"""The action grammar (registry + canvas state), its regex rendering, and the token automaton."""

from __future__ import annotations

import random
import re

import pytest

from flowsteer.canvas import Canvas, CanvasConfig, FinishConstraints, parse_action, render_action
from flowsteer.canvas.actions import AddConditional, AddLoop, AddOperator, AddParallel, Delete, Finish, Modify
from flowsteer.constrain import (
    ActionGrammar,
    GrammarOptions,
    TokenAutomaton,
    action_constraint,
    action_grammar,
    check_canonical,
    prompt_grammar,
    to_regex,
    workflow_of,
)
from flowsteer.errors import ParseFailure
from flowsteer.operators.base import Role
from flowsteer.operators.custom import register_operator
from flowsteer.operators.registry import default_registry
from flowsteer.tasks import Task
from flowsteer.testing import SimulatedExecutor
from flowsteer.workflow.dsl import parse

PIPELINE = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    from flowsteer.testing.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def custom_registry():
    registry = default_registry().copy()

    @register_operator(name="UnitCheck", role=Role.CHECKING, description="Checks units.", registry=registry)
    def unit_check(call):
        return "PASS"

    return registry


def _canvas(registry=None, **config):
    return Canvas(SimulatedExecutor(), registry=registry,
                  config=CanvasConfig(execute_each_step=False, **config))


def _build(canvas: Canvas, *texts: str) -> None:
    for text in texts:
        obs, _, info = canvas.step(text)
        assert info.accepted, info.message
        while obs.state.value == "awaiting_prompt":
            obs, _, info = canvas.step("Solve the problem carefully.")
            assert info.accepted, info.message


def _accepts(workflow, text: str) -> bool:
    probe = _canvas()
    probe.reset(Task("What is 2 + 3?"))
    probe._workflow = workflow  # noqa: SLF001 - start the probe from the given state
    return probe.step(text)[2].accepted


def test_custom_operator_is_offered_in_every_slot_its_role_allows(custom_registry):
    g = action_grammar(custom_registry)
    assert g.matches(render_action(AddOperator("UnitCheck")))
    assert g.matches(render_action(AddConditional("UnitCheck", "Revise")))
    assert g.matches(render_action(AddParallel(("UnitCheck", "Custom"))))
    assert not action_grammar(default_registry()).matches(render_action(AddOperator("UnitCheck")))
    # a solver is never a condition; an ensembler never sits inside a parallel block
    assert not g.matches(render_action(AddConditional("Custom", "Revise")))
    assert not g.matches(render_action(AddParallel(("ScEnsemble", "Custom"))))


def test_counts_and_list_lengths():
    g = action_grammar()
    assert g.matches(render_action(AddLoop(("Review", "Revise"), 10)))
    assert g.matches(render_action(AddLoop(("Review",), 1)))
    assert not g.matches(render_action(AddLoop(("Review", "Revise"), 11)))
    assert not g.matches(render_action(AddLoop(("Review", "Revise"), 0)))
    assert not g.matches(render_action(AddParallel(("Custom",))))
    assert not g.matches(render_action(AddParallel(("Custom",) * 5)))  # max_list = 4
    assert g.matches(render_action(AddParallel(("Custom",) * 4)))
    assert not g.matches("<action>add</action><operator>Programmer</operator> and more")
    assert not g.matches(" <action>finish</action>")


def test_empty_canvas_offers_no_node_actions_and_no_positions():
    g = action_grammar()
    assert not g.matches(render_action(Delete("node_1")))
    assert not g.matches(render_action(AddOperator("Plan", position=1)))
    assert g.matches(render_action(Finish()))


def test_node_ids_are_those_that_exist_now():
    canvas = _canvas()
    canvas.reset(Task("What is 2 + 3?"))
    _build(canvas, "<action>add</action><operator>Plan</operator>",
           "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
           "<true>Revise</true><false>done</false>",
           "<action>delete</action><target>node_1</target>",
           "<action>add</action><operator>Format</operator>")
    ids = canvas.workflow.ids()
    g = action_grammar(canvas.registry, canvas.workflow)
    assert "node_1" not in ids
    assert not g.matches(render_action(Delete("node_1")))
    check = canvas.workflow.steps[0].check.id  # the conditional's checker
    for node_id in ids:  # offered exactly when the canvas would accept it
        text = render_action(Delete(node_id))
        assert g.matches(text) == _accepts(canvas.workflow, text), node_id
    assert g.matches(render_action(Delete(canvas.workflow.steps[0].id)))
    assert not g.matches(render_action(Delete(check)))  # a conditional needs its checker
    assert g.matches(render_action(Modify(check, "Review")))
    assert not g.matches(render_action(Modify(check, "Custom")))  # would not be a checker any more
    assert g.matches(f"<action>set_prompt</action><target>{check}</target><prompt>Check the sum.</prompt>")
    assert not g.matches(f"<action>set_prompt</action><target>{check}</target><prompt>a <b></prompt>")
    top = len(canvas.workflow.steps)  # the workflow ends with Format: top + 1 would append after it
    for position in (top, top + 1):
        text = render_action(AddOperator("Plan", position=position))
        assert g.matches(text) == _accepts(canvas.workflow, text) == (position == top), position
    assert not g.matches(render_action(AddOperator("Plan", position=top + 2)))


def test_every_sampled_output_is_accepted_by_the_canvas():
    rng = random.Random(0)
    canvas = _canvas()
    canvas.reset(Task("What is 2 + 3?"))
    _build(canvas, "<action>add</action><operator>Plan</operator>",
           "<action>add</action><structure>parallel</structure><operators>Programmer, Custom</operators>",
           "<action>add</action><operator>ScEnsemble</operator>")
    base = canvas.workflow
    g = action_grammar(canvas.registry, base, GrammarOptions(think_tokens=8), kind=canvas.task.kind)
    for _ in range(150):
        text = g.sample(rng)
        action = parse_action(text, canvas.registry, lenient=False)
        assert not isinstance(action, ParseFailure), (text, action)
        assert isinstance(action, Finish) or _accepts(base, text), text


def test_finish_policy_and_node_room():
    assert not action_grammar(options=GrammarOptions(finish="never")).matches("<action>finish</action>")
    when = GrammarOptions(finish="when_allowed")
    assert not action_grammar(options=when, finish_allowed=False).matches("<action>finish</action>")
    assert action_grammar(options=when, finish_allowed=True).matches("<action>finish</action>")
    wf = parse("Plan -> Programmer", default_registry())
    full = action_grammar(workflow=wf, options=GrammarOptions(max_nodes=2))
    assert not full.matches(render_action(AddOperator("Format")))
    room3 = action_grammar(workflow=wf, options=GrammarOptions(max_nodes=5))
    assert room3.matches(render_action(AddParallel(("Custom", "Programmer"))))
    assert not room3.matches(render_action(AddParallel(("Custom", "Programmer", "Plan"))))


def test_finish_when_allowed_reads_the_canvas():
    constraint = action_constraint(finish="when_allowed")
    canvas = _canvas()
    canvas.reset(Task("What is 2 + 3?"))
    _build(canvas, "<action>add</action><operator>Plan</operator>")
    assert not constraint.grammar(canvas).matches("<action>finish</action>")
    relaxed = _canvas(finish=FinishConstraints(min_operators=1, require_checker=False, require_structure=False,
                                               require_format_when_verbose=False))
    relaxed.reset(Task("What is 2 + 3?"))
    _build(relaxed, "<action>add</action><operator>Programmer</operator>")
    assert constraint.grammar(relaxed).matches("<action>finish</action>")


def test_think_part_is_optional_and_bounded_by_tags():
    g = action_grammar(options=GrammarOptions(think_tokens=16))
    assert g.matches("<think>plan first</think>\n<action>add</action><operator>Plan</operator>")
    assert g.matches("<action>add</action><operator>Plan</operator>")
    assert not g.matches("<think>a <b> c</think>\n<action>finish</action>")
    assert not g.matches("<think>unterminated<action>finish</action>")


def test_prompt_turn_grammar_is_free_text_without_tags():
    g = prompt_grammar(32)
    assert g.matches("Compute the sum step by step.")
    assert not g.matches("Use <action>finish</action>")
    from flowsteer.canvas.env import CanvasState, Observation

    waiting = Observation("<feedback></feedback>", CanvasState.AWAITING_PROMPT, 1, 10, "Plan")
    assert action_constraint().grammar(waiting) is not None
    assert action_constraint(prompt_turns=False).grammar(waiting) is None


def test_round_trips_as_data():
    g = action_grammar(workflow=parse(PIPELINE, default_registry()), options=GrammarOptions(think_tokens=4))
    assert ActionGrammar.from_json(g.to_json()) == g


def test_regex_matches_exactly_the_grammar():
    g = action_grammar(workflow=parse(PIPELINE, default_registry()), options=GrammarOptions(think_tokens=8))
    pattern = re.compile(to_regex(g))
    rng = random.Random(1)
    for _ in range(100):
        assert pattern.fullmatch(g.sample(rng))
    for bad in ("<action>add</action><operator>Nope</operator>", render_action(AddLoop(("Review",), 11)),
                render_action(Delete("node_99")), "<action>finish</action>extra"):
        assert not pattern.fullmatch(bad) and not g.matches(bad)


def test_observation_ids_match_the_canvas_after_deletes():
    canvas = _canvas()
    canvas.reset(Task("What is 2 + 3?"))
    _build(canvas, "<action>add</action><operator>Plan</operator>",
           "<action>add</action><operator>Custom</operator>",
           "<action>delete</action><target>node_1</target>",
           "<action>add</action><structure>loop</structure><operators>Review, Revise</operators><count>2</count>")
    assert workflow_of(canvas.observation) == (canvas.workflow, True)  # the observation carries it
    assert workflow_of(canvas)[0] is canvas.workflow
    # An observation built by hand (no workflow) is read back from its DSL and [Nodes] section.
    import dataclasses

    workflow, exact = workflow_of(dataclasses.replace(canvas.observation, workflow=None))
    assert exact and workflow.ids() == canvas.workflow.ids() and workflow.dsl == canvas.workflow.dsl


# -- token automaton (tiny tokenizer) ----------------------------------------------------------------

def test_piecewise_tokens_are_the_tokenizers_canonical_tokens(tokenizer):
    g = action_grammar(workflow=parse(PIPELINE, default_registry()), options=GrammarOptions(think_tokens=8))
    assert check_canonical(g, tokenizer, samples=80) == []


def test_automaton_masks_and_end_of_sequence(tokenizer):
    g = action_grammar(workflow=parse(PIPELINE, default_registry()))
    automaton = TokenAutomaton(g, tokenizer)
    ids = tokenizer.encode("<action>delete</action><target>node_1</target>", add_special_tokens=False)
    states = automaton.replay(ids)
    for k, token in enumerate(ids):
        allowed = automaton.allowed(states[k])
        assert token in allowed.tokens and not allowed.eos and not allowed.free
    assert automaton.allowed(states[-1]).eos and not automaton.allowed(states[-1]).tokens
    bad = tokenizer.encode("<action>delete</action><target>node_42</target>", add_special_tokens=False)
    assert not automaton.accepts_ids(bad)
    assert automaton.advance(automaton.start(), tokenizer.encode("x", add_special_tokens=False)[0]) == frozenset()


def test_token_budget_forces_completion(tokenizer):
    g = action_grammar(options=GrammarOptions(think_tokens=64))
    automaton = TokenAutomaton(g, tokenizer)
    rng = random.Random(3)
    shortest = automaton.distance(automaton.roots[g.start]) + 1  # + the end token
    for budget in (shortest, shortest + 3, 40):
        for _ in range(20):
            ids = automaton.sample_ids(rng, budget)
            assert len(ids) + 1 <= budget and automaton.accepts_ids(ids)
            assert not isinstance(parse_action(tokenizer.decode(ids), default_registry()), ParseFailure)


def test_a_fourth_identical_operator_in_a_row_is_not_offered():
    add_plan = render_action(AddOperator("Plan"))
    three = parse("Plan -> Plan -> Plan")
    assert not action_grammar(default_registry(), three).matches(add_plan)
    assert action_grammar(default_registry(), three).matches(render_action(AddOperator("Programmer")))
    assert action_grammar(default_registry(), parse("Plan -> Plan")).matches(add_plan)
    assert action_grammar(default_registry(), parse("Plan -> Plan -> Custom")).matches(add_plan)
    unlimited = GrammarOptions(max_repeats=None)
    assert action_grammar(default_registry(), three, unlimited).matches(add_plan)


def test_inserts_the_canvas_would_refuse_are_not_offered_and_the_others_are():
    """An insert that would stack a fourth identical operator (the shipped director kept inserting a
    fourth Programmer at position 1 on GSM8K) is withheld at exactly the positions the canvas refuses."""
    registry = default_registry()
    three = parse("Programmer -> Programmer -> Programmer -> Verify ? Revise : done -> Format", registry)
    g = action_grammar(registry, three)
    seen = {True: 0, False: 0}
    for name in ("Programmer", "Verify", "Custom", "Format"):
        for position in range(1, len(three.steps) + 1):
            text = render_action(AddOperator(name, position=position))
            offered, accepted = g.matches(text), _accepts(three, text)
            assert offered == accepted, (name, position, offered, accepted)
            seen[offered] += 1
    assert seen[True] and seen[False]
    assert not g.matches(render_action(AddOperator("Programmer", position=1)))
    assert g.matches(render_action(AddOperator("Programmer", position=5)))  # before Format: a run of one
    # appending the last operator again is withheld, its inserts elsewhere are not
    plans = parse("Custom -> Plan -> Plan -> Plan", registry)
    g = action_grammar(registry, plans)
    assert not g.matches(render_action(AddOperator("Plan")))
    assert g.matches(render_action(AddOperator("Plan", position=1)))
    assert not g.matches(render_action(AddOperator("Plan", position=3)))


def _dead_ends(automaton, budget):
    """Every (state, tokens left) the constrained sampler can reach within ``budget`` tokens, from
    the start, taking every allowed token (one representative token per free-text loop); returns
    those with nothing allowed (no token, no free text, no end of sequence) and how many were seen."""
    free_token = {}
    start = (automaton.start(), budget)
    seen, todo, dead = {start}, [start], []
    while todo:
        state, left = todo.pop()
        allowed = automaton.allowed(state, left)
        options = set(allowed.tokens)
        for forbid in allowed.free:
            if forbid not in free_token:
                table = automaton.free_table(forbid)
                free_token[forbid] = next(t for t in range(automaton.vocab_size) if table[t])
            options.add(free_token[forbid])
        if not options and not allowed.eos:
            dead.append((state, left))
        if left <= 1:
            continue
        for token in options:
            nxt = (automaton.advance(state, token), left - 1)
            assert nxt[0], f"an allowed token {token} led nowhere"
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return dead, len(seen)


@pytest.mark.parametrize("dsl", ["", "Programmer", PIPELINE, "Plan -> Plan -> Plan"])
def test_no_reachable_grammar_state_is_a_dead_end(tokenizer, dsl):
    """The small-model director's grammar (64 new tokens, 40-token prompts, finish when allowed)
    over real canvases: every state the sampler can reach still has a way to a complete action."""
    from flowsteer.director import DirectorConfig

    registry = default_registry()
    constraint = DirectorConfig.small_model(constrained=True).constraint
    workflow = parse(dsl, registry) if dsl else None
    for finish in (True, False):
        for kind in ("math", "code"):
            g = action_grammar(registry, workflow, constraint.options, finish_allowed=finish, kind=kind)
            dead, seen = _dead_ends(TokenAutomaton(g, tokenizer), constraint.max_new_tokens)
            assert seen > 100 and not dead, (dsl, finish, kind, dead[:3])
    # the walk does find dead ends where they exist: a budget shorter than every action
    assert _dead_ends(TokenAutomaton(action_grammar(registry, workflow), tokenizer), 4)[0]
