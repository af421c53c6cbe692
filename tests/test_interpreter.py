"""The interpreter's semantics with the real operators on scripted models (spec 3.4, section 13)."""

from __future__ import annotations

import re
import time

import pytest

from flowsteer.operators import OperatorResult, Role, default_registry, register_operator
from flowsteer.tasks import Task
from flowsteer.testing import ScriptedChatModel
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.interpreter import ExecutionResult, Interpreter, NodeCache, cache_key
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel

TASK = Task("Tom has 3 apples and buys 4 more. How many apples does he have?", answer="7")
_HEADER = re.compile(r"FlowSteer operator: (\w+)")


class NoSandbox:
    async def arun(self, *args, **kwargs):
        raise AssertionError("no code should run in these tests")

    async def acheck(self, *args, **kwargs):
        raise AssertionError("no code should run in these tests")


def routed(script: dict, *, latency: float = 0.0) -> ScriptedChatModel:
    """A scripted model answering per operator: a string (always) or a list (in order)."""
    queues = {name: list(v) if isinstance(v, list) else v for name, v in script.items()}

    def reply(messages):
        name = _HEADER.search(messages[0].content).group(1)
        entry = queues[name]
        if isinstance(entry, list):
            if not entry:
                raise AssertionError(f"{name} was called more often than scripted")
            return entry.pop(0)
        return entry

    return ScriptedChatModel([], default=reply, latency=latency)


def run(dsl: str, model, *, task: Task = TASK, cache: NodeCache | None = None, registry=None) -> ExecutionResult:
    registry = registry or default_registry()
    return Interpreter(model, sandbox=NoSandbox(), registry=registry).run(parse(dsl, registry), task, cache=cache)


def ops(result: ExecutionResult) -> list[str]:
    return [t.operator for t in result.trace]


def prompts_of(model: ScriptedChatModel, operator: str) -> list[str]:
    return [m[-1].content for m in model.calls if _HEADER.search(m[0].content).group(1) == operator]


def test_full_workflow_end_to_end_with_trace():
    model = routed({
        "Plan": "<approach>Add.</approach><plan>1. Count\n2. Add</plan>",
        "AnswerGenerate": "<answer>8</answer>",
        "Custom": "3 + 4 = 7, so <answer>7</answer>",
        "ScEnsemble": "<choice>A</choice>",
        "Verify": "<answer>7</answer><verdict>fail</verdict><confidence>medium</confidence>"
                  "<feedback>3 + 4 is 7</feedback>",
        "Revise": "<solution>Tom has 7 apples.</solution>",
        "Format": "<answer>7</answer>",
    })
    result = run("Plan -> [AnswerGenerate, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format", model)
    assert result.ok and result.answer == "7"
    assert ops(result) == ["Plan", "AnswerGenerate", "Custom", "ScEnsemble", "Verify", "Revise", "Format"]
    assert [t.node_id for t in result.trace] == ["node_1", "node_3", "node_4", "node_5", "node_7", "node_8", "node_9"]
    by_op = {t.operator: t for t in result.trace}
    assert by_op["AnswerGenerate"].input == by_op["Plan"].result.output  # branches share the input
    assert by_op["ScEnsemble"].input == ("8", "3 + 4 = 7, so <answer>7</answer>")
    assert by_op["Verify"].result.verdict is False and by_op["Verify"].input == "8"
    assert by_op["Revise"].input == "8" and "3 + 4 is 7" in prompts_of(model, "Revise")[0]
    assert by_op["Format"].input == "Tom has 7 apples."
    assert result.usage.calls == 7 and result.usage.input_tokens > 0


def test_parallel_branches_overlap_in_time():
    model = routed({"AnswerGenerate": "<answer>7</answer>", "Custom": "7"}, latency=0.3)
    start = time.perf_counter()
    result = run("[AnswerGenerate, Custom, AnswerGenerate] -> Aggregate", model)
    elapsed = time.perf_counter() - start
    branches = [t for t in result.trace if t.operator != "Aggregate"]
    assert len(branches) == 3 and result.answer == "7"
    assert max(t.started for t in branches) < min(t.ended for t in branches)  # all three overlap
    assert elapsed < 0.3 * 2


@pytest.mark.parametrize(("verdict", "expected"), [
    ("pass", ["AnswerGenerate", "Review", "Format"]),
    ("fail", ["AnswerGenerate", "Review", "Revise"]),
    ("unsure", ["AnswerGenerate", "Review", "Revise"]),  # an undecided check counts as a failure
])
def test_conditional_runs_on_fail_only_when_the_check_fails(verdict, expected):
    """Reference bug 13.10: its branch polarity was the opposite of what the prompt said."""
    model = routed({"AnswerGenerate": "<answer>8</answer>", "Review": f"<verdict>{verdict}</verdict>",
                    "Revise": "<solution>7</solution>", "Format": "<answer>8</answer>"})
    result = run("AnswerGenerate -> Review ? Revise : Format", model)
    assert ops(result) == expected


def test_conditional_done_passes_the_checked_solution_through():
    model = routed({"AnswerGenerate": "<answer>7</answer>", "Review": "<verdict>pass</verdict>"})
    result = run("AnswerGenerate -> Review ? Revise : done", model)
    assert ops(result) == ["AnswerGenerate", "Review"] and result.answer == "7"


def test_loop_leaves_as_soon_as_its_checker_passes():
    model = routed({"AnswerGenerate": "<answer>8</answer>",
                    "Review": ["<verdict>fail</verdict><feedback>wrong</feedback>", "<verdict>pass</verdict>"],
                    "Revise": ["<solution>7</solution>", "<solution>9</solution>"]})
    result = run("AnswerGenerate -> (Review -> Revise) * 3", model)
    # the passing Review ends the loop at once: the rest of that iteration (Revise) is skipped
    assert ops(result) == ["AnswerGenerate", "Review", "Revise", "Review"]
    assert [t.iteration for t in result.trace] == [0, 0, 0, 1]
    assert result.answer == "7"


def test_a_passing_first_review_never_pays_for_revise():
    model = routed({"Custom": "<answer>4</answer>", "Review": "<verdict>pass</verdict>",
                    "Revise": "<solution>5</solution>", "Format": "<answer>4</answer>"})
    result = run("Custom -> (Review -> Revise) * 2 -> Format", model)
    assert ops(result) == ["Custom", "Review", "Format"] and result.answer == "4"


def test_parallel_checkers_in_a_loop_must_all_pass():
    from flowsteer.testing import ScriptedChatModel  # noqa: F401  (routed builds on it)

    model = routed({"Custom": "<answer>4</answer>", "Review": "<verdict>pass</verdict>",
                    "Verify": ["<verdict>fail</verdict>", "<verdict>pass</verdict>"],
                    "Revise": "<solution>4</solution>"})
    result = run("Custom -> ([Review, Verify] -> Revise) * 3", model)
    # iteration 0: Review passes beside a failing Verify, so the loop goes on (Revise runs)
    assert ops(result).count("Revise") == 1 and ops(result).count("Verify") == 2
    assert [t.iteration for t in result.trace if t.operator == "Verify"] == [0, 1]


def test_loop_runs_max_iterations_when_the_checker_keeps_failing():
    model = routed({"AnswerGenerate": "<answer>8</answer>", "Review": "<verdict>fail</verdict>",
                    "Revise": "<solution>8</solution>"})
    result = run("AnswerGenerate -> (Review -> Revise) * 4", model)
    assert ops(result).count("Review") == 4 and ops(result).count("Revise") == 4


def test_single_operator_loop_and_repeated_operators_really_repeat():
    """Reference bug 13.9: it collapsed `(Revise) * 3` and `Custom -> Custom` to one call."""
    model = routed({"Revise": ["<solution>a</solution>", "<solution>ab</solution>", "<solution>abc</solution>"]})
    result = run("(Revise) * 3", model)
    assert ops(result) == ["Revise"] * 3 and result.answer == "abc"
    assert [t.input for t in result.trace] == [None, "a", "ab"]
    custom = routed({"Custom": ["first draft", "second draft"]})
    result = run("Custom -> Custom", custom)
    assert ops(result) == ["Custom", "Custom"] and result.answer == "second draft"
    assert "first draft" in prompts_of(custom, "Custom")[1]


def test_aggregate_does_not_override_later_steps():
    """Reference bug 13.26: a workflow containing Aggregate returned Aggregate's output."""
    model = routed({"AnswerGenerate": "<answer>7</answer>", "Custom": "Seven apples in total."})
    result = run("[AnswerGenerate, AnswerGenerate] -> Aggregate -> Custom", model)
    aggregate = next(t for t in result.trace if t.operator == "Aggregate")
    assert aggregate.result.output == "7" and aggregate.result.data["fast_path"]
    assert result.answer == "Seven apples in total."


def test_workflow_ending_in_parallel_answers_with_the_most_common_branch():
    model = routed({"AnswerGenerate": "<answer>7</answer>", "Custom": "8"})
    assert run("[AnswerGenerate, Custom, AnswerGenerate]", model).answer == "7"


def test_feedback_travels_to_a_later_revise_in_a_plain_chain():
    model = routed({"AnswerGenerate": "<answer>8</answer>",
                    "Review": "<verdict>fail</verdict><feedback>count again: 3 + 4</feedback>",
                    "Revise": "<solution>7</solution>"})
    result = run("AnswerGenerate -> Review -> Revise", model)
    assert result.answer == "7" and "count again: 3 + 4" in prompts_of(model, "Revise")[0]


def test_node_cache_skips_unchanged_nodes():
    script = {"Plan": "<plan>1. add</plan>", "AnswerGenerate": "<answer>7</answer>",
              "Format": "<answer>7</answer>"}
    model = routed(script)
    cache = NodeCache()
    workflow = parse("Plan -> AnswerGenerate -> Format")
    interp = Interpreter(model, sandbox=NoSandbox())
    first = interp.run(workflow, TASK, cache=cache)
    assert len(model.calls) == 3 and not any(t.cached for t in first.trace)
    again = interp.run(workflow, TASK, cache=cache)
    assert len(model.calls) == 3 and all(t.cached for t in again.trace) and again.answer == "7"
    assert again.usage.calls == 0
    builder = WorkflowBuilder(workflow)
    builder.set_prompt("node_3", "Only the number.")
    edited = interp.run(builder.build(), TASK, cache=cache)
    assert len(model.calls) == 4 and [t.cached for t in edited.trace] == [True, True, False]


def test_cache_keys_distinguish_identical_nodes_in_parallel_branches():
    a, b = OperatorNode("Custom", id="node_2"), OperatorNode("Custom", id="node_3")
    assert cache_key(TASK, a, "x", None) != cache_key(TASK, b, "x", None)
    model = routed({"Custom": ["draft one", "draft two"]})
    cache = NodeCache()
    interp = Interpreter(model, sandbox=NoSandbox())
    workflow = parse("[Custom, Custom]")
    first = interp.run(workflow, TASK, cache=cache)
    again = interp.run(workflow, TASK, cache=cache)
    assert {t.result.output for t in first.trace} == {"draft one", "draft two"}
    assert [t.result.output for t in again.trace] == [t.result.output for t in first.trace]


def test_a_raising_model_aborts_with_an_error_naming_the_node():
    model = ScriptedChatModel(["<plan>1. add</plan>"], default="<answer>7</answer>", fail_every=2)
    result = run("Plan -> AnswerGenerate -> Format", model)
    assert not result.ok and "AnswerGenerate (node_2)" in result.error and "injected failure" in result.error
    assert ops(result) == ["Plan"] and result.answer == ""


def test_a_raising_user_operator_is_blamed_by_node():
    registry = default_registry().copy()

    @register_operator(name="Explode", role=Role.SOLVING, description="Always raises.", registry=registry)
    def explode(call):
        raise ValueError("boom")

    model = routed({"AnswerGenerate": "<answer>7</answer>"})
    result = run("AnswerGenerate -> Explode", model, registry=registry)
    assert result.error == "Explode (node_2) failed: ValueError: boom"


def test_operator_error_values_do_not_abort_the_run():
    model = routed({"AnswerGenerate": "no tags at all", "Format": "<answer>7</answer>"})
    result = run("AnswerGenerate -> Format", model)
    assert result.ok and result.answer == "7"
    assert [t.operator for t in result.node_errors] == ["AnswerGenerate"]


async def test_sync_run_works_inside_a_running_event_loop():
    model = routed({"AnswerGenerate": "<answer>7</answer>"})
    assert run("AnswerGenerate", model).answer == "7"


def test_checker_output_is_returned_when_it_ends_the_workflow():
    model = routed({"Custom": "The total is 7.", "Review": "<verdict>pass</verdict>"})
    result = run("Custom -> Review", model)
    assert result.answer == "The total is 7." and result.trace[-1].result.verdict is True


def test_loop_with_a_passing_user_checker_runs_once():
    registry = default_registry().copy()
    register_operator(lambda call: OperatorResult(output="ok", verdict=True), name="Always",
                      role="checking", description="Always passes.", registry=registry)
    model = routed({"AnswerGenerate": "<answer>7</answer>"})
    result = run("AnswerGenerate -> (Always -> AnswerGenerate) * 5", model, registry=registry)
    assert ops(result) == ["AnswerGenerate", "Always"]  # the loop ends at its passing checker


async def test_callbacks_see_each_node_as_a_run_with_its_model_call_nested():
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.chains, self.models = {}, []

        def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kwargs):
            self.chains[run_id] = kwargs.get("name")

        def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kwargs):
            self.models.append(parent_run_id)

    handler = Recorder()
    model = routed({"Plan": "<plan>1. add</plan>", "AnswerGenerate": "<answer>7</answer>"})
    interp = Interpreter(model, sandbox=NoSandbox())
    result = await interp.arun(parse("Plan -> AnswerGenerate"), TASK, config={"callbacks": [handler]})
    assert result.ok
    assert sorted(handler.chains.values()) == ["AnswerGenerate node_2", "Plan node_1"]
    assert [handler.chains[parent] for parent in handler.models] == ["Plan node_1", "AnswerGenerate node_2"]


def test_loop_exit_needs_every_parallel_checker_whatever_order_they_finish_in():
    import asyncio

    from flowsteer.workflow.ir import Loop, Parallel

    registry = default_registry().copy()

    @register_operator(name="SlowFail", role=Role.CHECKING, description="Slow failing check.", registry=registry)
    async def slow_fail(call):
        await asyncio.sleep(0.05)
        return OperatorResult(output="x", verdict=False, feedback="no")

    @register_operator(name="FastPass", role=Role.CHECKING, description="Fast passing check.", registry=registry)
    async def fast_pass(call):
        return OperatorResult(output="x", verdict=True, feedback="yes")

    builder = WorkflowBuilder(registry=registry)
    builder.add(Loop((Parallel(((OperatorNode("SlowFail"),), (OperatorNode("FastPass"),))),), 3))
    result = Interpreter(routed({}), sandbox=NoSandbox(), registry=registry).run(builder.build(), TASK)
    # the fast pass finishing first (or last in branch order) never ends the loop beside a failing check
    assert ops(result) == ["SlowFail", "FastPass"] * 3


@pytest.mark.parametrize("bad", [
    Loop((OperatorNode("Custom", id="node_2"),), 11, id="node_1"),
    Parallel(((OperatorNode("Custom", id="node_2"),),), id="node_1"),
    Conditional(OperatorNode("Verify", id="node_2"), (), (), id="node_1"),
])
def test_invalid_workflows_are_refused_before_any_call_with_validates_errors(bad):
    from flowsteer.errors import WorkflowValidationError
    from flowsteer.workflow.ir import Workflow
    from flowsteer.workflow.validation import validate

    workflow = Workflow((bad,), next_id=3)
    expected = validate(workflow)
    assert expected
    model = routed({"Custom": "<answer>1</answer>"})
    with pytest.raises(WorkflowValidationError) as err:
        Interpreter(model, sandbox=NoSandbox()).run(workflow, TASK)
    assert err.value.violations == expected and not model.calls
