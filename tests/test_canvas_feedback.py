"""The feedback block's structure sections: one walk over the workflow, same text as the graph stats."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowsteer.canvas.feedback import render_feedback, shrink_feedback
from flowsteer.director.context import BudgetParts, fit_messages
from flowsteer.operators.registry import default_registry
from flowsteer.testing.strategies import workflows
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.graph import stats
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow

REGISTRY = default_registry()


def _section(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"[{name}]: "):
            return line[len(name) + 4:]
    raise AssertionError(f"no [{name}] in {text!r}")


def _expected_statistics(workflow: Workflow) -> str:
    s = stats(workflow, REGISTRY)
    kinds = [name for name, flag in (("parallel", s.has_parallel), ("conditional", s.has_conditional),
                                     ("loop", s.has_loop)) if flag]
    return (f"{s.operator_count} operators, {s.unique_operators} unique types; structures: "
            f"{', '.join(kinds) if kinds else 'none'}")


def _expected_kinds(workflow: Workflow) -> list[str]:
    out = []
    for ref in workflow.walk():
        match ref.node:
            case OperatorNode(operator=name):
                out.append(name)
            case Parallel():
                out.append("parallel")
            case Conditional():
                out.append("conditional")
            case Loop():
                out.append("loop")
    return out


def _render(workflow: Workflow, **extra: object) -> str:
    return render_feedback(status="Success", message="ok", workflow=workflow, registry=REGISTRY, turn=3,
                           max_turns=20, feedback_chars=100_000, **extra)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(workflows(REGISTRY, max_steps=5, max_depth=2))
def test_statistics_match_the_graph_stats(workflow):
    assert _section(_render(workflow), "Statistics") == _expected_statistics(workflow)


@settings(max_examples=40, deadline=None)
@given(workflows(REGISTRY, max_steps=4, max_depth=2))
def test_nodes_list_every_node_in_walk_order_with_its_parent(workflow):
    nodes = _section(_render(workflow), "Nodes")
    head = nodes.split(" … ", 1)[0]  # [Nodes] is cut to 500 characters: check the items shown whole
    items = head.split("; ")
    if head != nodes:
        items = items[:-1]
    refs = list(workflow.walk())[: len(items)]
    kinds = _expected_kinds(workflow)[: len(items)]
    assert [item.split(": ", 1)[0] for item in items] == [ref.node.id for ref in refs]
    for item, ref, kind in zip(items, refs, kinds, strict=True):
        assert kind in item
        if ref.parent is not None:
            assert f" in {ref.parent.id}" in item


@settings(max_examples=30, deadline=None)
@given(workflows(REGISTRY, max_steps=4, max_depth=1))
def test_a_dsl_passed_in_renders_the_same_block(workflow):
    assert _render(workflow, dsl=workflow.dsl) == _render(workflow)


def test_empty_workflow_shows_empty_whatever_dsl_is_passed():
    text = _render(Workflow(), dsl="ignored")
    assert _section(text, "Current DSL") == "(empty)"
    assert _section(text, "Nodes") == "none"
    assert _section(text, "Statistics") == "0 operators, 0 unique types; structures: none"


@given(st.text(max_size=120))
def test_node_gists_stay_neutralised_and_bounded(prompt):
    workflow = Workflow((OperatorNode("Custom", prompt=prompt, id="node_1"),), next_id=2)
    nodes = _section(_render(workflow), "Nodes")
    gist = nodes.split(" (", 1)[1][:-1]
    assert len(gist) <= 40
    assert "<action" not in gist.lower() and "</feedback" not in gist.lower()


# -- shrinking a block for a tight context budget --------------------------------------------------------
_LONG = "a node reported an error; " * 40


@settings(max_examples=40, deadline=None)
@given(workflows(REGISTRY, max_steps=4, max_depth=2), st.integers(min_value=200, max_value=900))
def test_a_shrunk_block_keeps_its_sections_the_dsl_and_the_round(workflow, limit):
    full = render_feedback(status="Success", message=_LONG, workflow=workflow, registry=REGISTRY, turn=4,
                           max_turns=10, feedback_chars=100_000)
    shrunk = shrink_feedback(full, limit)
    assert shrunk is not None and len(shrunk) <= limit
    assert shrunk.startswith("<feedback>\n[Status]: Success\n") and shrunk.endswith("[Round]: 4/10\n</feedback>")
    dsl = "(empty)" if workflow.is_empty else workflow.dsl
    if len(dsl) <= 300 and len(dsl) + 80 <= limit:  # what is on the canvas survives whole while it can
        assert _section(shrunk, "Current DSL") == dsl
    # every line left is a section of the block, in the block's order
    names = [line[1:line.index("]")] for line in shrunk.splitlines()[1:-1]]
    order = [line[1:line.index("]")] for line in full.splitlines()[1:-1]]
    assert names == [n for n in order if n in names]


def test_shrinking_leaves_a_fitting_block_and_other_text_alone():
    block = _render(Workflow())
    assert shrink_feedback(block, len(block)) == block
    assert shrink_feedback("plain text " * 50, 100) is None


def test_the_director_budget_cut_keeps_the_canvas_state():
    # a budget far too small for the block: the history goes first, then the block shrinks by
    # section (the DSL and the round stay), never by dropping its middle
    workflow = parse("Programmer -> Verify ? Revise : done -> Format", REGISTRY)
    full = render_feedback(status="Failed", message=_LONG, workflow=workflow, registry=REGISTRY,
                           turn=7, max_turns=10, feedback_chars=100_000)
    parts = BudgetParts(history=[f"turn {i}: add" for i in range(6)], feedback=full, question="What is 2+2?")

    def render(p: BudgetParts) -> list[dict[str, str]]:
        return [{"role": "user", "content": "\n".join([p.question, *p.history, p.feedback])}]

    messages, used = fit_messages(parts, render, lambda ms: sum(len(m["content"]) for m in ms) // 3, 90)
    text = messages[0]["content"]
    assert used <= 90 and not parts.history and parts.omitted == 6
    assert "[Round]: 7/10" in text and " [...] " not in text
    assert "[Current DSL]: Programmer -> Verify ? Revise : done -> Format\n" in text
