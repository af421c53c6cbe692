"""WorkflowBuilder: monotonic ids (the reference's collision bug), nested edits, helpful errors."""

from __future__ import annotations

import pytest

from flowsteer.errors import UserError, WorkflowValidationError
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow


@pytest.fixture
def builder(toy_registry):
    return WorkflowBuilder(registry=toy_registry)


def test_ids_are_monotonic_and_pre_order(builder):
    assert builder.add("Plan") == "node_1"
    pid = builder.add_parallel(["Programmer", ["Custom", "Review"]])
    assert pid == "node_2"
    wf = builder.workflow
    par = wf.steps[1]
    assert isinstance(par, Parallel)
    assert [s.id for s in par.branches[0]] == ["node_3"]
    assert [s.id for s in par.branches[1]] == ["node_4", "node_5"]
    cid = builder.add_conditional("Verify", ["Revise", "Format"], "Format")
    cond = builder.workflow.find(cid)
    assert isinstance(cond, Conditional)
    assert (cond.id, cond.check.id) == ("node_6", "node_7")
    assert [s.id for s in cond.on_fail] == ["node_8", "node_9"]
    assert [s.id for s in cond.on_pass] == ["node_10"]
    assert builder.workflow.next_id == 11


def test_ids_never_collide_after_delete(builder):
    """The reference gave ``node_{len+1}``: delete node_2 of 3, add one, and node_3 came back twice."""
    for name in ("Plan", "Programmer", "Format"):
        builder.add(name)
    builder.delete("node_2")
    new_id = builder.add("Verify")
    assert new_id == "node_4"
    ids = builder.workflow.ids()
    assert ids == ["node_1", "node_3", "node_4"]
    assert len(set(ids)) == len(ids)
    builder.delete("node_4")
    assert builder.add("Review") == "node_5"


def test_ids_continue_from_an_existing_workflow(toy_registry):
    wf = Workflow((OperatorNode("Plan", id="node_7"),), next_id=8)
    builder = WorkflowBuilder(wf, registry=toy_registry)
    assert builder.add("Format") == "node_8"


def test_insert_at_position(builder):
    builder.add("Plan")
    builder.add("Format")
    new_id = builder.insert(1, "Programmer", prompt="write code")
    assert [s.operator for s in builder.workflow.steps] == ["Plan", "Programmer", "Format"]
    node = builder.workflow.find(new_id)
    assert isinstance(node, OperatorNode) and node.prompt == "write code"
    builder.insert(0, "Decompose")
    assert builder.workflow.steps[0].operator == "Decompose"  # type: ignore[union-attr]


def test_insert_out_of_range_names_the_valid_range(builder):
    builder.add("Plan")
    with pytest.raises(UserError, match=r"use 0\.\.1"):
        builder.insert(5, "Format")


def test_prepared_step_gets_fresh_ids(builder):
    builder.add("Plan")
    loop_id = builder.add(Loop((OperatorNode("Review", id="node_1"), OperatorNode("Revise")), 2))
    loop = builder.workflow.find(loop_id)
    assert isinstance(loop, Loop)
    assert [loop.id, *(s.id for s in loop.body)] == ["node_2", "node_3", "node_4"]


def test_nested_modify_set_prompt_and_set_params(builder):
    builder.add("Plan")
    lid = builder.add_loop(["Review", "Revise"], 3)
    cid = builder.add_conditional("Verify", "Revise")
    loop = builder.workflow.find(lid)
    assert isinstance(loop, Loop)
    review_id = loop.body[0].id
    builder.set_prompt(review_id, "look for arithmetic slips")
    builder.modify(review_id, "Verify")
    node = builder.workflow.find(review_id)
    assert isinstance(node, OperatorNode)
    assert (node.operator, node.prompt) == ("Verify", "")  # modify resets the prompt
    builder.set_prompt(review_id, "check the units")
    cond = builder.workflow.find(cid)
    assert isinstance(cond, Conditional)
    builder.modify(cond.check.id, "Test", prompt="run the tests")
    builder.set_params(cond.on_fail[0].id, attempts=2)
    wf = builder.build()
    assert wf.dsl == "Plan -> (Verify -> Revise) * 3 -> Test ? Revise : done"
    assert wf.find(review_id).prompt == "check the units"  # type: ignore[union-attr]
    assert wf.find(cond.check.id).prompt == "run the tests"  # type: ignore[union-attr]
    assert dict(wf.find(cond.on_fail[0].id).params) == {"attempts": 2}  # type: ignore[union-attr]


def test_delete_nested_node_and_whole_structure(builder):
    pid = builder.add_parallel(["Programmer", "Custom", "AnswerGenerate"])
    builder.add("ScEnsemble")
    par = builder.workflow.find(pid)
    assert isinstance(par, Parallel)
    builder.delete(par.branches[2][0].id)
    assert builder.workflow.dsl == "[Programmer, Custom] -> ScEnsemble"
    builder.delete(pid)
    assert builder.workflow.dsl == "ScEnsemble"
    assert builder.workflow.find(par.branches[0][0].id) is None


def test_deleting_a_conditional_check_says_what_to_do(builder):
    cid = builder.add_conditional("Verify", "Revise")
    cond = builder.workflow.find(cid)
    assert isinstance(cond, Conditional)
    with pytest.raises(UserError, match=f"delete {cid} instead"):
        builder.delete(cond.check.id)


def test_missing_node_lists_existing_ids(builder):
    builder.add("Plan")
    with pytest.raises(UserError, match="node 'node_9' not found; existing ids: node_1"):
        builder.set_prompt("node_9", "x")
    with pytest.raises(UserError, match="not found"):
        builder.delete("node_9")


def test_structures_cannot_take_prompts_or_be_modified(builder):
    lid = builder.add_loop("Review", 2)
    with pytest.raises(UserError, match="only operator nodes can be modified"):
        builder.modify(lid, "Plan")
    with pytest.raises(UserError, match="prompts belong to operator nodes"):
        builder.set_prompt(lid, "x")


def test_build_raises_with_every_violation(builder):
    builder.add("Plan")
    builder.add_parallel(["Programmer", "ScEnsemble"])
    builder.add("Nonsense")
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    codes = {v.code for v in info.value.violations}
    assert codes == {"ensembler_in_parallel", "unknown_operator"}
    assert "place it right after the parallel block" in str(info.value)


def test_builder_edits_never_mutate_earlier_workflows(builder):
    builder.add("Plan")
    before = builder.workflow
    builder.add("Format")
    builder.set_prompt("node_1", "new")
    assert before.dsl == "Plan" and before.steps[0].prompt == ""  # type: ignore[union-attr]


def test_nodes_are_hashable_values():
    a = OperatorNode("Plan", params={"k": 1}, id="node_1")
    b = OperatorNode("Plan", params={"k": 1}, id="node_1")
    assert a == b and hash(a) == hash(b)
    assert len({Parallel(((a,), (b,))), Parallel(((b,), (a,)))}) == 1


def test_deleting_a_branch_leaves_a_block_that_validation_reports(builder):
    pid = builder.add_parallel(["Programmer", "Custom"])
    par = builder.workflow.find(pid)
    assert isinstance(par, Parallel)
    builder.delete(par.branches[1][0].id)
    assert builder.workflow.dsl == "[Programmer]"
    assert [v.code for v in builder.validate()] == ["parallel_too_small"]
