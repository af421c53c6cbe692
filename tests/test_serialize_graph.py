"""JSON form, networkx view, stats, Mermaid snapshot, and the generating strategies themselves."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings

from flowsteer.errors import UserError
from flowsteer.testing.strategies import chains, operator_nodes, workflows
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.graph import END, START, has_cycle, stats, to_mermaid, to_networkx, topological_order
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
from flowsteer.workflow.serialize import from_dict, from_json, to_dict, to_json
from flowsteer.workflow.validation import validate

FIXTURE_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- JSON ------------------------------------------------------------------------------------
def test_json_keeps_ids_prompts_params_and_counter(toy_registry):
    builder = WorkflowBuilder(parse("Plan -> Verify ? (Revise -> Format) : done", toy_registry), registry=toy_registry)
    builder.delete("node_5")  # leaves a gap: the counter must survive the trip
    builder.set_prompt("node_1", "List the steps. Ünïcode too.")
    builder.set_params("node_4", attempts=2, style={"tone": "terse"})
    wf = builder.build()
    data = json.loads(to_json(wf))
    assert data["version"] == 1 and data["next_id"] == 6
    assert data["dsl"] == "Plan -> Verify ? Revise : done"
    assert data["steps"][1]["type"] == "conditional"
    assert data["steps"][1]["on_fail"][0]["params"] == {"attempts": 2, "style": {"tone": "terse"}}
    back = from_json(to_json(wf))
    assert back == wf
    assert WorkflowBuilder(back, registry=toy_registry).add("Format") == "node_6"


def test_json_round_trip_generated(toy_registry):
    @FIXTURE_SETTINGS
    @given(workflows(toy_registry, max_steps=5, max_depth=2))
    def check(wf: Workflow) -> None:
        assert from_json(to_json(wf)) == wf
        assert from_dict(to_dict(wf)) == wf

    check()


def test_hand_written_documents(toy_registry):
    only_dsl = from_dict({"dsl": "Plan -> (Review -> Revise) * 2"})
    assert only_dsl.dsl == "Plan -> (Review -> Revise) * 2" and only_dsl.ids()[0] == "node_1"
    no_ids = from_dict({"steps": [
        {"operator": "Plan", "prompt": "p"},  # "type" defaults to operator
        {"type": "conditional", "check": {"operator": "Verify"}, "on_fail": [{"operator": "Revise"}]},
    ]})
    assert no_ids.ids() == ["node_1", "node_2", "node_3", "node_4"] and no_ids.next_id == 5
    mixed = from_dict({"steps": [{"operator": "Plan", "id": "node_7"}, {"operator": "Format"}]})
    assert mixed.ids() == ["node_7", "node_8"] and mixed.next_id == 9
    assert from_dict({"dsl": "Verify  ?  Revise:done", "steps": [
        {"type": "conditional", "check": {"operator": "Verify"}, "on_fail": [{"operator": "Revise"}]}]}).dsl == (
        "Verify ? Revise : done")


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        ({"steps": [{"type": "conditional", "check": {"operator": "Verify"}}]},
         ["steps[0].on_fail: Field required", "add this field"]),
        ({"steps": [{"type": "lop"}]}, ["steps[0]:", "set 'type' to one of: operator, parallel, conditional, loop"]),
        ({"steps": [{"type": "loop", "body": [{"operator": "Review"}], "max_iterations": 11}]},
         ["steps[0].max_iterations", "less than or equal to 10", "use a smaller value"]),
        ({"steps": [{"type": "parallel", "branches": [[{"type": "operator"}], [{"operator": "A", "x": 1}]]}]},
         ["2 problem(s)", "steps[0].branches[0][0].operator: Field required",
          "steps[0].branches[1][0].x: Extra inputs are not permitted; remove this field"]),
        ({"steps": [{"operator": ""}]}, ["steps[0].operator", "give a non-empty string"]),
        ({"steps": [{"operator": "A", "id": "node_3"}], "next_id": 2}, ["next_id: 2 would reuse", "at least 4"]),
        ({"steps": [{"operator": "A", "id": "x"}, {"operator": "B", "id": "x"}]}, ["duplicate id(s) x"]),
        ({"dsl": "A -> B", "steps": [{"operator": "A"}]}, ["dsl: 'A -> B' does not match steps, which read 'A'"]),
        ({"dsl": "A -> "}, ["dsl: expected an operator", "position 5"]),
        ({"version": 2, "steps": []}, ["version: unsupported", "reads version 1"]),
        ({"version": 1}, ["give 'steps'"]),
        ([1, 2], ["must be a JSON object, got list"]),
    ],
)
def test_invalid_documents_name_the_field_and_fix(document, fragments):
    with pytest.raises(UserError) as info:
        from_dict(document)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_invalid_json_text_names_line_and_column():
    with pytest.raises(UserError, match="line 2, column 2"):
        from_json('{"steps": []\n}}')


# -- stats -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "count", "structure"),
    [  # the reference spec's worked examples (section 8.2): operator counts and structure
        ("Plan -> Verify -> Format", 3, False),
        ("Plan -> Decompose -> [Programmer, Custom] -> Aggregate -> Verify -> Format", 7, True),
        ("Plan -> Decompose -> Programmer -> Custom -> Aggregate -> Verify -> Format", 7, False),
        ("Plan -> Programmer -> (Review -> Revise) * 2 -> Verify -> Format", 6, True),
        ("Plan -> Programmer -> Verify ? Revise : done -> Format", 5, True),
    ],
)
def test_stats_on_the_reference_worked_examples(text, count, structure, toy_registry):
    s = stats(parse(text, toy_registry), toy_registry)
    assert s.operator_count == count
    assert s.has_structure is structure


def test_stats_fields(toy_registry):
    s = stats(parse("Plan -> [Programmer, Custom -> Custom] -> ScEnsemble -> (Verify ? Revise : done) * 2",
                    toy_registry), toy_registry)
    assert s.operators == ("Plan", "Programmer", "Custom", "Custom", "ScEnsemble", "Verify", "Revise")
    assert (s.operator_count, s.unique_operators) == (7, 6)
    assert (s.has_parallel, s.has_conditional, s.has_loop) == (True, True, True)
    assert dict(s.role_counts) == {"planning": 1, "solving": 3, "checking": 1, "revising": 1,
                                   "ensembling": 1, "formatting": 0}
    assert s.max_depth == 2  # a conditional inside a loop
    flat = stats(Workflow((OperatorNode("Mystery"),)), toy_registry)  # unknown: no role counted
    assert flat.max_depth == 0 and sum(flat.role_counts.values()) == 0 and not flat.has_structure


def test_loops_count_as_structure(toy_registry):
    s = stats(parse("(Review -> Revise) * 3", toy_registry), toy_registry)
    assert s.has_loop and s.has_structure and s.operator_count == 2


# -- networkx --------------------------------------------------------------------------------
def test_networkx_shape_follows_data_flow(toy_registry):
    wf = parse("Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> (Review -> Revise) * 3",
               toy_registry)
    g = to_networkx(wf)
    assert g.nodes["node_1"] == {"kind": "operator", "operator": "Plan", "prompt": "", "label": "node_1: Plan"}
    assert set(g.successors("node_1")) == {"node_3", "node_4"}
    assert set(g.predecessors("node_2")) == {"node_3", "node_4"} and g.nodes["node_2"]["kind"] == "join"
    assert g.edges["node_6", "node_8"]["branch"] == "fail"
    assert g.edges["node_6", "node_6.join"]["branch"] == "pass"
    back = [(u, v) for u, v, loop in g.edges(data="loop") if loop]
    assert back == [("node_9", "node_10")]
    assert g.edges["node_9", "node_10"]["max_iterations"] == 3
    assert list(g.successors(START)) == ["node_1"] and list(g.predecessors(END)) == ["node_9"]
    assert has_cycle(g, ignore_back_edges=False) and not has_cycle(g)
    assert topological_order(wf, operators_only=True) == [
        "node_1", "node_3", "node_4", "node_5", "node_7", "node_8", "node_10", "node_11"]


def test_loop_whose_body_starts_with_a_parallel_repeats_every_branch(toy_registry):
    g = to_networkx(parse("([Programmer, Custom] -> ScEnsemble) * 2", toy_registry))
    assert sorted(v for u, v, loop in g.edges(data="loop") if loop) == ["node_3", "node_4"]


def test_graph_needs_ids():
    with pytest.raises(UserError, match="build it with WorkflowBuilder"):
        to_networkx(Workflow((OperatorNode("Plan"),)))


def test_generated_graphs_are_dags_without_back_edges(toy_registry):
    @FIXTURE_SETTINGS
    @given(workflows(toy_registry, max_steps=5, max_depth=2))
    def check(wf: Workflow) -> None:
        g = to_networkx(wf)
        order = topological_order(g)
        assert not has_cycle(g)
        assert has_cycle(g, ignore_back_edges=False) == stats(wf, toy_registry).has_loop
        assert order[0] == START and order[-1] == END
        ops = [n.id for n in wf.operator_nodes()]
        assert sorted(topological_order(g, operators_only=True)) == sorted(ops)
        assert nx.has_path(g, START, END)
        assert all(nx.has_path(g, START, n) and nx.has_path(g, n, END) for n in ops)

    check()


MERMAID = """\
flowchart TD
    __start__([start])
    node_1["node_1: Plan"]
    node_3["node_3: Programmer"]
    node_4["node_4: Custom"]
    node_2(("node_2: join"))
    node_5["node_5: ScEnsemble"]
    node_7["node_7: Verify"]
    node_6{"node_6: Verify passed?"}
    node_8["node_8: Revise"]
    node_6_join(("node_6: end if"))
    node_10["node_10: Review"]
    node_11["node_11: Revise"]
    node_9{"node_9: repeat up to 2"}
    node_12["node_12: Format"]
    __end__([end])
    __start__ --> node_1
    node_1 --> node_3
    node_1 --> node_4
    node_3 --> node_2
    node_4 --> node_2
    node_2 --> node_5
    node_5 --> node_7
    node_7 --> node_6
    node_6 -->|fail| node_8
    node_6 -->|pass| node_6_join
    node_8 --> node_6_join
    node_6_join --> node_10
    node_10 --> node_11
    node_11 --> node_9
    node_9 -.->|repeat| node_10
    node_9 --> node_12
    node_12 --> __end__
"""


def test_mermaid_snapshot(toy_registry):
    wf = parse("Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> (Review -> Revise) * 2 "
               "-> Format", toy_registry)
    assert to_mermaid(wf) == MERMAID
    assert to_mermaid(wf) == to_mermaid(from_json(to_json(wf)))


# -- the strategies --------------------------------------------------------------------------
def test_strategies_cover_every_structure_and_stay_valid(toy_registry):
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(workflows(toy_registry, max_steps=6, max_depth=2))
    def check(wf: Workflow) -> None:
        assert validate(wf, toy_registry) == []
        assert len(set(wf.ids())) == len(wf.ids())
        s = stats(wf, toy_registry)
        assert s.max_depth <= 2
        for ref in wf.walk():
            match ref.node:
                case Parallel():
                    seen.add("parallel")
                case Conditional(on_pass=on_pass):
                    seen.add("conditional+pass" if on_pass else "conditional+done")
                case Loop(max_iterations=count):
                    assert 1 <= count <= 10
                    seen.add("loop")
                case OperatorNode(operator=name) if name in ("ScEnsemble", "Aggregate"):
                    seen.add("ensembler")
        if s.max_depth == 2:
            seen.add("nested")

    check()
    assert seen == {"parallel", "conditional+pass", "conditional+done", "loop", "ensembler", "nested"}


def test_chain_and_node_strategies(toy_registry):
    from flowsteer.operators.base import Role

    @FIXTURE_SETTINGS
    @given(chains(toy_registry, max_depth=0), operator_nodes(toy_registry, roles=[Role.CHECKING], prompts=False))
    def check(chain, node) -> None:
        assert chain and all(isinstance(s, OperatorNode) and s.id == "" for s in chain)
        assert node.operator in ("Test", "Review", "Verify") and node.prompt == ""

    check()
    empty = toy_registry.copy()
    for spec in list(empty):
        if spec.role is Role.CHECKING:
            empty.unregister(spec.name)
    with pytest.raises(UserError, match="no operator with role"):
        operator_nodes(empty, roles=[Role.CHECKING])
