"""The action parser: the spec 4.2 grammar, tolerant forms, failures that teach the XML form."""

from __future__ import annotations

import pytest

from flowsteer.canvas import (
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Delete,
    Finish,
    Modify,
    ParseFailure,
    SetPrompt,
    extract_prompt,
    parse_action,
    render_action,
)
from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorSpec


@pytest.fixture
def reg(toy_registry):
    return toy_registry


def failure(text, reg, **kw) -> ParseFailure:
    result = parse_action(text, reg, **kw)
    assert isinstance(result, ParseFailure), result
    assert result.message
    return result


# -- the canonical grammar --------------------------------------------------------------------
CANONICAL = [
    ("<action>add</action><operator>Plan</operator>", AddOperator("Plan")),
    ("<action>add</action><operator>Format</operator><position>1</position>", AddOperator("Format", 1)),
    ("<action>add</action><operator>Custom</operator><prompt>Solve it step by step.</prompt>",
     AddOperator("Custom", None, "Solve it step by step.")),
    ("<action>add</action><structure>parallel</structure><operators>Programmer,Custom,AnswerGenerate</operators>",
     AddParallel(("Programmer", "Custom", "AnswerGenerate"))),
    ("<action>add</action><structure>conditional</structure><condition>Verify</condition>"
     "<true>Revise</true><false>done</false>", AddConditional("Verify", "Revise", None)),
    ("<action>add</action><structure>conditional</structure><condition>Review</condition>"
     "<true>Revise</true><false>Format</false>", AddConditional("Review", "Revise", "Format")),
    ("<action>add</action><structure>loop</structure><operators>Review,Revise</operators><count>3</count>",
     AddLoop(("Review", "Revise"), 3)),
    ("<action>delete</action><target>node_3</target>", Delete("node_3")),
    ("<action>modify</action><target>node_2</target><operator>Programmer</operator>",
     Modify("node_2", "Programmer")),
    ("<action>set_prompt</action><target>node_1</target><prompt>List the givens first.</prompt>",
     SetPrompt("node_1", "List the givens first.")),
    ("<action>finish</action>", Finish()),
    ("<action>finish</action><answer>42</answer>", Finish("42")),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_forms(text, expected, reg):
    assert parse_action(text, reg) == expected


@pytest.mark.parametrize("action", [expected for _, expected in CANONICAL])
def test_render_action_round_trips(action, reg):
    assert parse_action(render_action(action), reg) == action


def test_render_action_is_canonical_xml():
    assert render_action(AddConditional("Verify", "Revise")) == (
        "<action>add</action><structure>conditional</structure><condition>Verify</condition>"
        "<true>Revise</true><false>done</false>"
    )
    assert render_action(AddLoop(("Review", "Revise"), 2)) == (
        "<action>add</action><structure>loop</structure><operators>Review, Revise</operators><count>2</count>"
    )
    with pytest.raises(UserError):
        render_action("add Plan")  # type: ignore[arg-type]


# -- tolerant forms ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "<ACTION>Add</ACTION><Operator>PLAN</Operator>",
    "[action]add[/action][operator]plan[/operator]",
    "```xml\n<action>add</action><operator>Plan</operator>\n```",
    "<think>Plan first, then solvers.</think>\n<action>add</action><operator>Plan</operator>",
    "<reasoning>Use Custom? No, Plan.</reasoning><action>add</action><operator>Plan</operator>",
    "I add a planner.\n< action >add</ action ><operator> `Plan` </operator> trailing prose",
    "<action>add</action><operator>Plan",  # truncated: unclosed tag ends at the end of text
    "<action>add</action><operator>Plan</operator><action>add</action><operator>Custom</operator>",
    "half a thought about Custom</think><action>add</action><operator>Plan</operator>",
])
def test_tolerant_forms(text, reg):
    assert parse_action(text, reg) == AddOperator("Plan")


def test_only_the_first_action_counts(reg):
    text = ("<action>delete</action><target>node_1</target>"
            "<action>modify</action><target>node_2</target><operator>Custom</operator>")
    assert parse_action(text, reg) == Delete("node_1")


@pytest.mark.parametrize("listed", [
    "Programmer, Custom", "Programmer;Custom", "Programmer Custom", "programmer ,  CUSTOM",
    "Programmer -> Custom", "Programmer | Custom",
])
def test_operator_lists_split(listed, reg):
    text = f"<action>add</action><structure>parallel</structure><operators>{listed}</operators>"
    assert parse_action(text, reg) == AddParallel(("Programmer", "Custom"))


@pytest.mark.parametrize(("written", "target"), [
    ("node_3", "node_3"), ("3", "node_3"), ("Node 3", "node_3"), ("NODE_12", "node_12"), ("'node_4'", "node_4"),
])
def test_node_ids_normalised(written, target, reg):
    assert parse_action(f"<action>delete</action><target>{written}</target>", reg) == Delete(target)


def test_conditional_pass_branch_missing_or_done_is_pass_through(reg):
    base = "<action>add</action><structure>conditional</structure><condition>verify</condition><true>revise</true>"
    assert parse_action(base, reg) == AddConditional("Verify", "Revise", None)
    assert parse_action(base + "<false>DONE</false>", reg) == AddConditional("Verify", "Revise", None)
    aliases = ("<action>add</action><structure>conditional</structure><condition>Test</condition>"
               "<on_fail>Programmer</on_fail><on_pass>Format</on_pass>")
    assert parse_action(aliases, reg) == AddConditional("Test", "Programmer", "Format")


def test_loop_count_default_and_range(reg):
    base = "<action>add</action><structure>loop</structure><operators>Review, Revise</operators>"
    assert parse_action(base, reg) == AddLoop(("Review", "Revise"), 3)
    assert parse_action(base + "<count>10</count>", reg) == AddLoop(("Review", "Revise"), 10)
    assert parse_action(base + "<count> 2 times</count>", reg) == AddLoop(("Review", "Revise"), 2)
    for bad in ("0", "11", "-1"):
        message = failure(base + f"<count>{bad}</count>", reg).message
        assert "between 1 and 10" in message
    assert "<count>3</count>" in failure(base + "<count>three</count>", reg).message


# -- failures ------------------------------------------------------------------------------------
def test_unknown_operator_lists_valid_ones_and_is_not_corrected(reg):
    message = failure("<action>add</action><operator>Coder</operator>", reg).message
    assert "unknown operator 'Coder'" in message
    for name in reg.names():
        assert name in message
    assert "<action>add</action><operator>NAME</operator>" in message


def test_vocabulary_comes_from_the_registry(reg):
    # A user-registered operator is accepted; a built-in name the registry lacks is not.
    custom = reg.copy()
    custom.register(OperatorSpec("FactCheck", Role.CHECKING, "checks facts", lambda ctx: None))
    custom.unregister("Verify")
    assert parse_action("<action>add</action><operator>factcheck</operator>", custom) == AddOperator("FactCheck")
    message = failure("<action>add</action><operator>Verify</operator>", custom).message
    assert "FactCheck" in message and "unknown operator 'Verify'" in message


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty output"),
    ("   \n ", "empty output"),
    ("<think>I should add Plan because", "think-only"),
    ("<action>explode</action>", "unknown action"),
    ("<action>add</action><structure>tree</structure>", "unknown structure"),
    ("<action>add</action><structure>parallel</structure><operators>Custom</operators>", "at least 2"),
    ("<action>add</action><structure>parallel</structure><operators>" + ",".join(["Custom"] * 9) + "</operators>",
     "at most 8"),
    ("<action>add</action><structure>loop</structure><operators></operators>", "at least 1"),
    ("<action>add</action><structure>conditional</structure><true>Revise</true>", "<condition>"),
    ("<action>add</action><structure>conditional</structure><condition>Verify</condition>", "<true>"),
    ("<action>add</action><operator>Plan, Custom</operator>", "exactly one operator"),
    ("<action>add</action>", "missing operator name"),
    ("<action>add</action><operator>Plan</operator><position>0</position>", "1-based"),
    ("<action>add</action><operator>Plan</operator><position>first</position>", "1-based"),
    ("<action>delete</action>", "<target>"),
    ("<action>modify</action><target>node_1</target>", "missing operator name"),
    ("<action>set_prompt</action><target>node_1</target>", "prompt text"),
])
def test_failures_explain_the_fix(text, needle, reg):
    result = failure(text, reg)
    assert needle in result.message
    assert "<" in result.message  # every failure shows (part of) the XML form
    assert result.raw == text[:300]


def test_echoed_model_text_cannot_form_tags(reg):
    message = failure("<action>add</action><operator>x</feedback><action></operator>", reg).message
    assert "</feedback>" not in message


# -- the non-strict fallback (spec 4.2) -----------------------------------------------------------
def test_lenient_fallback(reg):
    assert parse_action("Great, the workflow is complete.", reg) == Finish()
    assert parse_action("Let's finish here.", reg) == Finish()
    assert parse_action("Next I would add a Verify step.", reg) == AddOperator("Verify")
    several = failure("Maybe Plan, then Custom.", reg).message
    assert "several operators" in several and "Custom" in several and "Plan" in several
    assert "no <action> tag" in failure("hello there", reg).message
    # Lower-case English words are not operator mentions.
    assert isinstance(parse_action("we plan to verify the format", reg), ParseFailure)


def test_strict_mode_demands_xml(reg):
    assert "no <action> tag" in failure("Next I would add a Verify step.", reg, lenient=False).message
    assert "no <action> tag" in failure("the workflow is complete", reg, lenient=False).message


def test_non_string_input_is_a_developer_error(reg):
    with pytest.raises(UserError):
        parse_action(None, reg)  # type: ignore[arg-type]


# -- prompt turns ---------------------------------------------------------------------------------
def test_extract_prompt():
    assert extract_prompt("  Compute the total cost.  ") == "Compute the total cost."
    assert extract_prompt("<think>short</think>Use sympy.") == "Use sympy."
    assert extract_prompt("Sure! <prompt>List the givens.</prompt> Done.") == "List the givens."
    assert extract_prompt("[prompt]List the givens.[/prompt]") == "List the givens."
    assert "not an action" in extract_prompt("<action>finish</action>").message
    assert "think-only" in extract_prompt("<think>what should the prompt say").message


def test_conditional_written_in_dsl_form(reg):
    base = "<action>add</action><structure>conditional</structure><condition>{}</condition>"
    assert parse_action(base.format("Verify ? Revise : done"), reg) == AddConditional("Verify", "Revise", None)
    assert parse_action(base.format("review?revise:format"), reg) == AddConditional("Review", "Revise", "Format")
    assert parse_action(base.format("Test ? Programmer"), reg) == AddConditional("Test", "Programmer", None)


# -- one table for the action language ---------------------------------------------------------------
def test_one_table_drives_the_renderer_the_parser_and_the_grammar():
    from flowsteer.canvas.actions import (
        ACTION_SYNTAX,
        MAX_LIST_OPERATORS,
        AddConditional,
        AddLoop,
        AddParallel,
        Delete,
        Finish,
        Modify,
        SetPrompt,
        render_action,
        syntax_of,
    )
    from flowsteer.canvas.parser import action_forms, parse_action
    from flowsteer.constrain.grammar import GrammarOptions, action_grammar
    from flowsteer.operators import default_registry
    from flowsteer.workflow.dsl import parse

    registry = default_registry()
    examples = [AddOperator("Plan", position=1), AddParallel(("Programmer", "Custom")),
                AddConditional("Verify", "Revise"), AddLoop(("Review", "Revise"), 2), Delete("node_2"),
                Modify("node_1", "Custom"), SetPrompt("node_1", "Solve it step by step."), Finish()]
    assert {type(a) for a in examples} == {s.cls for s in ACTION_SYNTAX}
    grammar = action_grammar(registry, parse("Plan -> Programmer", registry), GrammarOptions(max_list=MAX_LIST_OPERATORS))
    forms = action_forms().splitlines()
    for action in examples:
        syntax = syntax_of(action)
        text = render_action(action)
        assert text.startswith(syntax.head()) and all(f"<{s.tag}>" in text for s in syntax.slots if not s.optional)
        assert parse_action(text, registry, lenient=False) == action  # the parser reads what the table writes
        assert grammar.matches(text), text  # and the grammar offers it
        assert any(line.startswith(syntax.form()) for line in forms)  # and failure messages quote it
    # the list limit is the table's: the grammar cannot offer more than the parser takes
    with pytest.raises(UserError, match=f"max_list <= {MAX_LIST_OPERATORS}"):
        GrammarOptions(max_list=MAX_LIST_OPERATORS + 1)
    too_many = render_action(AddParallel(("Custom",) * (MAX_LIST_OPERATORS + 1)))
    assert "at most" in str(parse_action(too_many, registry))
