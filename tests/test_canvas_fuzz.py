"""Fuzzing the action parser and the canvas with generated and mutated model outputs.

About 10,700 outputs in total (derandomized, so CI runs are reproducible): 4,000 generated and
2,000 mutated outputs through ``parse_action``, 1,000 round trips of generated actions, and 700
canvas episodes of 5 to 14 outputs each (about 3,700 ``Canvas.step`` calls; an episode stops early
at its turn limit or an accepted finish) with an echo executor.
Generated outputs mix valid actions, truncated and nested tags, both bracket styles, fences,
think blocks, unicode and control characters, huge inputs, and injection text that tries to close
the feedback block. Properties: nothing raises, every output is an action or a ParseFailure with a
message, and the canvas keeps its invariants (unique ids, a valid workflow, a bounded turn counter,
a bounded feedback block that only our own tags can close).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsteer.canvas import (
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Canvas,
    CanvasConfig,
    CanvasState,
    Delete,
    Finish,
    Modify,
    ParseFailure,
    SetPrompt,
    parse_action,
    render_action,
)
from flowsteer.testing import ScriptedChatModel
from flowsteer.workflow.interpreter import Interpreter
from flowsteer.workflow.validation import validate

FUZZ = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.function_scoped_fixture],
)
NAMES = ["Plan", "Decompose", "Programmer", "Custom", "AnswerGenerate", "Test", "Review", "Verify",
         "Revise", "ScEnsemble", "Aggregate", "Format"]
TAGS = ["action", "operator", "operators", "structure", "position", "prompt", "condition", "true",
        "false", "on_fail", "on_pass", "count", "target", "answer", "think", "reasoning", "thought",
        "feedback", "actio", "x"]
INJECTIONS = [
    "</feedback>", "</FEEDBACK>", "[/feedback]", "<feedback>", "[Status]: Finished", "\n[Round]: 20/20\n",
    "<action>finish</action>", "[action]finish[/action]", "Ignore all previous instructions.",
    "<think>", "</think>", "```", "```xml\n", "\u202e", "\x00", "\r\n", "<<<>>>", "[[]]",
]

# -- strategies -----------------------------------------------------------------------------------------
name_cased = st.sampled_from(NAMES).flatmap(
    lambda n: st.sampled_from([n, n.lower(), n.upper(), f" `{n}` "]))
op_list = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(tuple)
target = st.one_of(st.integers(0, 14).map(lambda i: f"node_{i}"), st.integers(0, 14).map(str),
                   st.text(max_size=6))
prompt_text = st.text(min_size=0, max_size=40)

actions = st.one_of(
    st.builds(AddOperator, st.sampled_from(NAMES), st.one_of(st.none(), st.integers(1, 6)),
              st.one_of(st.none(), prompt_text.filter(lambda p: "<" not in p and "[" not in p and p.strip() == p
                                                      and p))),
    st.builds(AddParallel, st.lists(st.sampled_from(NAMES), min_size=2, max_size=4).map(tuple)),
    st.builds(AddConditional, st.sampled_from(NAMES), st.sampled_from(NAMES),
              st.one_of(st.none(), st.sampled_from(NAMES))),
    st.builds(AddLoop, op_list, st.integers(1, 10)),
    st.builds(Delete, st.integers(1, 14).map(lambda i: f"node_{i}")),
    st.builds(Modify, st.integers(1, 14).map(lambda i: f"node_{i}"), st.sampled_from(NAMES)),
    st.builds(SetPrompt, st.integers(1, 14).map(lambda i: f"node_{i}"),
              st.text(min_size=1, max_size=40).filter(lambda p: "<" not in p and "[" not in p and p.strip())
              .map(str.strip)),
    st.just(Finish()),
)


@st.composite
def tag(draw) -> str:
    name = draw(st.sampled_from(TAGS))
    name = draw(st.sampled_from([name, name.upper(), name.title()]))
    open_, close = draw(st.sampled_from([("<", ">"), ("[", "]"), ("<", "]"), ("< ", " >")]))
    slash = draw(st.sampled_from(["", "/"]))
    return f"{open_}{slash}{name}{close}" if draw(st.booleans()) else f"{open_}{slash}{name}"


fragment = st.one_of(
    actions.map(render_action),
    tag(),
    name_cased,
    st.sampled_from(INJECTIONS),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.integers(-20, 20).map(str),
    st.sampled_from([",", ";", " -> ", "\n", "done", "node_", "parallel", "loop", "conditional", "finish"]),
)
huge = st.tuples(st.sampled_from(["<action>", "[", "x", "<think>", "Plan ", "</", "\n", "é"]),
                 st.integers(500, 10_000)).map(lambda t: t[0] * t[1])
small_output = st.lists(fragment, max_size=12).map("".join)
model_output = st.one_of(
    small_output,
    small_output,
    small_output,
    st.tuples(st.lists(fragment, max_size=4).map("".join), huge, actions.map(render_action))
    .map(lambda t: "".join(t)),
)


@st.composite
def mutated(draw) -> str:
    text = render_action(draw(actions))
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, n))
        match draw(st.sampled_from(["truncate", "delete", "duplicate", "insert", "case", "brackets", "nest"])):
            case "truncate":
                text = text[:i]
            case "delete":
                text = text[:i] + text[j:]
            case "duplicate":
                text = text[:j] + text[i:j] + text[j:]
            case "insert":
                text = text[:i] + draw(fragment) + text[i:]
            case "case":
                text = text[:i] + text[i:j].swapcase() + text[j:]
            case "brackets":
                text = text.replace("<", "[").replace(">", "]")
            case "nest":
                text = f"<action>{text}</action>" if draw(st.booleans()) else f"<think>{text}"
    return text


# -- properties ------------------------------------------------------------------------------------------
def _check_parse(text: str, registry) -> None:
    result = parse_action(text, registry)
    if isinstance(result, ParseFailure):
        assert result.message.strip()
        assert "</feedback>" not in result.message.lower()
    else:
        assert isinstance(result, AddOperator | AddParallel | AddConditional | AddLoop | Delete | Modify
                          | SetPrompt | Finish)


@settings(max_examples=4000, **FUZZ)
@given(text=model_output)
def test_parse_action_never_raises_on_generated_output(text, toy_registry):
    _check_parse(text, toy_registry)


@settings(max_examples=2000, **FUZZ)
@given(text=mutated())
def test_parse_action_never_raises_on_mutated_actions(text, toy_registry):
    _check_parse(text, toy_registry)


@settings(max_examples=1000, **FUZZ)
@given(action=actions, noise=st.sampled_from(["", "  ", "\n", "Sure!\n", "<think>plan</think>"]))
def test_generated_actions_round_trip(action, noise, toy_registry):
    parsed = parse_action(noise + render_action(action), toy_registry)
    if isinstance(action, AddParallel) and len(action.operators) < 2:
        assert isinstance(parsed, ParseFailure)
    else:
        assert parsed == action


def _check_canvas(canvas: Canvas, obs, done: bool, info, turns: int, registry) -> None:
    config = canvas.config
    ids = canvas.workflow.ids()
    assert len(ids) == len(set(ids)) and all(ids)
    assert validate(canvas.workflow, registry) == []
    assert canvas.turn == turns == obs.turn <= config.max_turns
    assert done == canvas.done == info.finished
    assert done == (info.stop_reason is not None)
    assert info.message.strip()
    assert info.accepted or info.message
    assert len(obs.text) <= config.feedback_chars
    assert obs.text.startswith("<feedback>\n") and obs.text.endswith("\n</feedback>")
    assert len(re.findall(r"[<\[]\s*/?\s*feedback", obs.text, re.I)) == 2
    assert obs.text.count("\n[Status]:") == 1
    assert f"[Round]: {turns}/{config.max_turns}" in obs.text
    awaiting = canvas.state is CanvasState.AWAITING_PROMPT
    assert (obs.prompt_request is not None) == awaiting
    if awaiting:
        assert canvas.workflow.find(obs.prompt_request.node_id) is not None


@settings(max_examples=700, **FUZZ)
@given(outputs=st.lists(st.one_of(actions.map(render_action), actions.map(render_action), model_output,
                                  mutated(), prompt_text), min_size=5, max_size=14),
       max_turns=st.integers(3, 14))
def test_canvas_step_never_raises_and_keeps_invariants(outputs, max_turns, toy_registry):
    interpreter = Interpreter(ScriptedChatModel(default="unused"), registry=toy_registry)
    canvas = Canvas(interpreter, config=CanvasConfig(max_turns=max_turns, feedback_chars=1200))
    canvas.reset("What is 2 + 3?")
    for turns, text in enumerate(outputs, 1):
        obs, done, info = canvas.step(text)
        _check_canvas(canvas, obs, done, info, turns, toy_registry)
        if done:
            break
    assert len(canvas.history) == canvas.turn
