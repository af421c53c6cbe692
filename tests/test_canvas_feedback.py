"""The feedback block's structure sections: one walk over the workflow, same text as the graph stats."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowsteer.canvas.feedback import render_feedback
from flowsteer.graph import stats
from flowsteer.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
from flowsteer.operators.registry import default_registry
from flowsteer.testing.strategies import workflows

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
