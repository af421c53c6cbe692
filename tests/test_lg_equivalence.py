"""The compiled LangGraph graph gives the core interpreter's answer and node outputs (property test)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lg_toys import toy_executor, toy_registry

from flowsteer.integrations import compile_workflow
from flowsteer.sandbox import Sandbox
from flowsteer.tasks import Task
from flowsteer.testing.strategies import workflows
from flowsteer.workflow.interpreter import Interpreter
from flowsteer.workflow.ir import Conditional, Loop, Parallel

REGISTRY = toy_registry()
SANDBOX = Sandbox(mode="process")
QUESTIONS = ("What is 12 + 30?", "Name the capital of France.", "How many legs do 3 spiders have?")
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def executions(trace) -> Counter:
    """Multiset of (node_id, iteration, output): equal multisets mean the same nodes ran as often."""
    return Counter((t.node_id, t.iteration, t.result.output) for t in trace)


def graph_executions(entries) -> Counter:
    return Counter((e["node_id"], e["iteration"], e["output"]) for e in entries)


def reference(workflow, question):
    interpreter = Interpreter(toy_executor(), sandbox=SANDBOX, registry=REGISTRY)
    result = interpreter.run(workflow, Task(question))
    assert result.ok, result.error
    return result


@SETTINGS
@given(workflow=workflows(REGISTRY, max_steps=5, max_depth=2), question=st.sampled_from(QUESTIONS))
def test_compiled_graph_matches_interpreter(workflow, question):
    expected = reference(workflow, question)
    graph = compile_workflow(workflow, executor=toy_executor(), sandbox=SANDBOX, registry=REGISTRY)
    state = graph.invoke({"question": question})
    assert state["answer"] == expected.answer
    assert state["outputs"] == {f"{n}#{i}": out for (n, i), out in expected.outputs().items()}
    assert graph_executions(state["trace"]) == executions(expected.trace)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=workflows(REGISTRY, max_steps=4, max_depth=3), question=st.sampled_from(QUESTIONS))
async def test_async_run_of_deeper_nesting_matches_interpreter(workflow, question):
    interpreter = Interpreter(toy_executor(), sandbox=SANDBOX, registry=REGISTRY)
    expected = await interpreter.arun(workflow, Task(question))
    graph = compile_workflow(workflow, executor=toy_executor(), sandbox=SANDBOX, registry=REGISTRY)
    state = await graph.ainvoke({"question": question})
    assert state["answer"] == expected.answer
    assert graph_executions(state["trace"]) == executions(expected.trace)


def test_generated_workflows_cover_every_structure_and_route():
    """The property above is only as good as its samples: they must hit every structure kind,
    both conditional routes and both ways out of a loop."""
    seen: Counter = Counter()

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(workflow=workflows(REGISTRY, max_steps=5, max_depth=2), question=st.sampled_from(QUESTIONS))
    def sample(workflow, question):
        result = reference(workflow, question)
        verdicts = {(t.node_id, t.iteration): t.result.verdict for t in result.trace}
        for ref in workflow.walk():
            node = ref.node
            seen[type(node).__name__] += 1
            if isinstance(node, Conditional):
                for (node_id, _), verdict in verdicts.items():
                    if node_id == node.check.id:
                        seen["pass" if verdict is True else "fail"] += 1
            if isinstance(node, Loop):
                runs = {i for (node_id, i) in verdicts if node_id in _ids(node)}
                seen["loop_early_exit" if len(runs) < node.max_iterations else "loop_full"] += 1
        if any(spec in {n.operator for n in workflow.operator_nodes()} for spec in ("Critic", "Summarise")):
            seen["custom_operator"] += 1

    sample()
    for key in ("Parallel", "Conditional", "Loop", "pass", "fail", "loop_early_exit", "loop_full",
                "custom_operator"):
        assert seen[key] > 0, f"no generated sample exercised {key}: {dict(seen)}"


def _ids(step) -> set[str]:
    from flowsteer.workflow.ir import iter_steps

    return {ref.node.id for ref in iter_steps(step.body)}


def _builtins_without_code():
    from flowsteer.operators.registry import default_registry

    registry = default_registry().copy()
    for name in ("Programmer", "Test"):  # sandbox subprocesses: covered below, too slow per example
        registry.unregister(name)
    return registry


BUILTINS = _builtins_without_code()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=workflows(BUILTINS, max_steps=4, max_depth=2), question=st.sampled_from(QUESTIONS))
def test_generated_workflows_of_real_operators_match_interpreter(workflow, question):
    from flowsteer.testing.fakes import SimulatedExecutor

    expected = Interpreter(SimulatedExecutor(seed=1), sandbox=SANDBOX, registry=BUILTINS).run(
        workflow, Task(question))
    state = compile_workflow(workflow, executor=SimulatedExecutor(seed=1), sandbox=SANDBOX,
                             registry=BUILTINS).invoke({"question": question})
    assert state["answer"] == expected.answer
    assert graph_executions(state["trace"]) == executions(expected.trace)


@pytest.mark.parametrize("question", QUESTIONS[:2])
def test_real_operators_with_simulated_executor_match_interpreter(question):
    """Built-in operators and the shipped SimulatedExecutor, not only toys."""
    from flowsteer.testing.fakes import SimulatedExecutor
    from flowsteer.workflow.dsl import parse

    workflow = parse("Plan -> [Programmer, AnswerGenerate -> Review ? Revise : done, Custom] -> ScEnsemble"
                     " -> (Verify ? Revise : done) * 3 -> [Custom, Programmer] -> Aggregate -> Format")
    expected = Interpreter(SimulatedExecutor(seed=3), sandbox=SANDBOX).run(workflow, Task(question))
    graph = compile_workflow(workflow, executor=SimulatedExecutor(seed=3), sandbox=SANDBOX)
    state = graph.invoke({"question": question})
    assert expected.ok
    assert state["answer"] == expected.answer
    assert graph_executions(state["trace"]) == executions(expected.trace)
    assert any(isinstance(s, Parallel) for s in workflow.steps)


def test_last_checker_of_an_iteration_is_taken_in_branch_order():
    """Loop > Parallel > Parallel: the interpreter's branch-1 tasks suspend in the inner gather, so
    completion order differs from branch order; both must still use branch order."""
    from flowsteer.workflow.builder import WorkflowBuilder
    from flowsteer.workflow.ir import OperatorNode

    builder = WorkflowBuilder(registry=REGISTRY)
    inner = Parallel(((OperatorNode("Custom"),), (OperatorNode("Custom"),)))
    builder.add(Loop((Parallel(((inner, OperatorNode("Verify")), (OperatorNode("Review"),))),), 3))
    workflow = builder.build()
    for n in range(12):
        expected = reference(workflow, f"question {n}")
        state = compile_workflow(workflow, executor=toy_executor(), sandbox=SANDBOX,
                                 registry=REGISTRY).invoke({"question": f"question {n}"})
        assert graph_executions(state["trace"]) == executions(expected.trace)
