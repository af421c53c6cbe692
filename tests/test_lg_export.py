"""Export: the standalone LangGraph module (executed), JSON, Mermaid snapshots, and the CLI."""

from __future__ import annotations

import ast
import json
import os
import runpy
import sys
from pathlib import Path

import pytest

from flowsteer.cli import main
from flowsteer.errors import UserError, WorkflowValidationError
from flowsteer.integrations import compile_workflow, export_workflow
from flowsteer.testing.fakes import SimulatedExecutor
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.dsl import parse
from flowsteer.workflow.ir import OperatorNode, Workflow
from flowsteer.workflow.serialize import from_json, to_json

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("FLOWSTEER_UPDATE_SNAPSHOTS") == "1"
"""Run with FLOWSTEER_UPDATE_SNAPSHOTS=1 to rewrite the snapshot files after an intended change."""

DESIGNED = ("Plan -> [Custom, AnswerGenerate -> Review ? Revise : done] -> ScEnsemble"
            " -> (Verify ? Revise : done) * 3 -> Format")
SHAPES = {
    "chain": "Plan -> Custom -> Format",
    "parallel": "[Custom, AnswerGenerate, Programmer] -> ScEnsemble",
    "conditional": "Custom -> Verify ? (Revise -> Format) : Format",
    "loop": "Custom -> (Review -> Revise) * 3",
    "designed": DESIGNED,
}


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"snapshot {path} is missing; run with FLOWSTEER_UPDATE_SNAPSHOTS=1 to create it")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, rerun with FLOWSTEER_UPDATE_SNAPSHOTS=1 and review the diff")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_mermaid_snapshots(shape):
    check_snapshot(f"lg_{shape}.mmd", export_workflow(parse(SHAPES[shape]), "mermaid"))


def test_exported_module_snapshot():
    check_snapshot("lg_designed_module.py.txt", export_workflow(parse(DESIGNED), "langgraph-py"))


def load_module(tmp_path: Path, workflow, run_name: str = "exported_workflow") -> dict:
    path = tmp_path / "exported_workflow.py"
    path.write_text(export_workflow(workflow, "langgraph-py"), encoding="utf-8")
    return runpy.run_path(str(path), run_name=run_name)


@pytest.mark.parametrize("question", ["What is 12 + 30?", "How many legs do 3 spiders have?"])
def test_exported_module_runs_like_the_in_memory_compile(tmp_path, question):
    workflow = parse(DESIGNED + " -> [Programmer, Custom] -> Aggregate")
    module = load_module(tmp_path, workflow)
    assert module["WORKFLOW"] == workflow
    assert module["graph"].get_graph().draw_mermaid() == compile_workflow(
        workflow, executor=SimulatedExecutor()).get_graph().draw_mermaid()
    exported = module["build_graph"](SimulatedExecutor(seed=5)).invoke({"question": question})
    in_memory = compile_workflow(workflow, executor=SimulatedExecutor(seed=5)).invoke({"question": question})
    assert exported["answer"] == in_memory["answer"] != ""
    assert exported["outputs"] == in_memory["outputs"]


def test_exported_module_keeps_ids_after_deletes_and_prompts_with_quotes(tmp_path):
    builder = WorkflowBuilder()
    builder.add("Plan", prompt='Say "hi"\nthen \'plan\' \\ carefully')
    doomed = builder.add("Custom")
    builder.add_loop(["Review", "Revise"], 2)
    builder.delete(doomed)
    builder.add("Format")
    workflow = builder.build()
    module = load_module(tmp_path, workflow)
    assert module["WORKFLOW"] == workflow
    assert [n.id for n in module["WORKFLOW"].operator_nodes()] == ["node_1", "node_4", "node_5", "node_6"]


def test_exported_module_is_clean_python(tmp_path):
    source = export_workflow(parse(DESIGNED), "langgraph-py")
    tree = ast.parse(source)
    assert ast.get_docstring(tree).startswith(DESIGNED)
    top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert top == {"build_graph"}
    assert "sys.path" not in source and "import flowsteer.integrations" not in source


def test_exported_module_main_answers_a_question(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["exported_workflow.py", "What is 2 + 2?"])
    load_module(tmp_path, parse("Custom -> Format"), run_name="__main__")
    assert capsys.readouterr().out.strip() != ""


def test_json_export_round_trips():
    workflow = parse(DESIGNED)
    text = export_workflow(workflow, "json")
    assert from_json(text) == workflow
    assert text == to_json(workflow) + "\n"


def test_export_rejects_bad_input():
    with pytest.raises(UserError, match="unknown export format"):
        export_workflow(parse("Custom"), "yaml")  # type: ignore[arg-type]
    for to in ("mermaid", "langgraph-py", "json"):
        with pytest.raises(WorkflowValidationError, match="unknown operator 'Nope'"):
            export_workflow(Workflow((OperatorNode("Nope", id="node_1"),), next_id=2), to)


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_exports_dsl_to_stdout(capsys):
    assert main(["export", "Custom -> Verify ? Revise : done", "--to", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out == export_workflow(parse("Custom -> Verify ? Revise : done"), "mermaid")


def test_cli_reads_a_json_file_and_writes_a_module(tmp_path, capsys):
    source = tmp_path / "wf.json"
    source.write_text(to_json(parse(DESIGNED)), encoding="utf-8")
    target = tmp_path / "graph.py"
    assert main(["export", str(source), "--to", "langgraph-py", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == export_workflow(parse(DESIGNED), "langgraph-py")
    assert "wrote" in capsys.readouterr().err


def test_cli_never_overwrites_without_force(tmp_path, capsys):
    target = tmp_path / "out.json"
    target.write_text("keep me", encoding="utf-8")
    assert main(["export", "Custom", "--to", "json", "-o", str(target)]) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "keep me"
    assert main(["export", "Custom", "--to", "json", "-o", str(target), "--force"]) == 0
    assert json.loads(target.read_text(encoding="utf-8"))["dsl"] == "Custom"


@pytest.mark.parametrize("argv, message", [
    (["export", "Custom ->", "--to", "json"], "position"),
    (["export", "Custom -> Nope", "--to", "mermaid"], "unknown operator 'Nope'"),
    (["export", "missing.json", "--to", "json"], "no such file"),
])
def test_cli_bad_workflow_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_json_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["export", str(bad), "--to", "mermaid"]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "not valid JSON" in err


def test_cli_rejects_unknown_format(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "Custom", "--to", "yaml"])
    assert info.value.code == 2


# -- the langgraph dev example -----------------------------------------------------------------
def test_langgraph_json_graphs_load_offline_and_run(monkeypatch):
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import Command

    root = Path(__file__).resolve().parent.parent
    config = json.loads((root / "examples" / "langgraph.json").read_text(encoding="utf-8"))
    # `langgraph dev --config examples/langgraph.json` resolves graph files against the working
    # directory: the documented command runs from the repository root, like every example
    assert config["graphs"] == {"designed": "./examples/designed_workflow.py:graph",
                                "director": "./examples/director_graph.py:graph"}
    for name in ("FLOWSTEER_EXECUTOR", "FLOWSTEER_WORKFLOW", "FLOWSTEER_DIRECTOR"):
        monkeypatch.delenv(name, raising=False)
    graphs = {}
    for name, spec in config["graphs"].items():
        path, attr = spec.split(":")
        graphs[name] = runpy.run_path(str(root / path), run_name=name)[attr]
        assert isinstance(graphs[name], CompiledStateGraph)
        assert graphs[name].get_input_jsonschema()["properties"]  # Studio's input form reads it
    designed = graphs["designed"]
    assert set(designed.get_input_jsonschema()["properties"]) == {"question", "task"}
    assert "answer" in designed.get_output_jsonschema()["properties"]
    assert "lanes" not in designed.get_output_jsonschema()["properties"]  # internal state stays inside
    assert designed.invoke({"question": "What is 12 + 30?"})["answer"] == "42"  # a demo question
    # the director graph interrupts with its design, then runs it when approved
    director = graphs["director"].copy(update={"checkpointer": InMemorySaver()})
    thread = {"configurable": {"thread_id": "t"}}
    paused = director.invoke({"question": "What is 12 + 30?"}, thread)
    assert "ScEnsemble" in paused["__interrupt__"][0].value["workflow"]
    assert director.invoke(Command(resume=True), thread)["answer"] == "42"


def test_the_designed_example_script_prints_the_right_answer():
    import subprocess
    import sys

    examples = Path(__file__).resolve().parent.parent / "examples"
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWSTEER_EXECUTOR", "FLOWSTEER_WORKFLOW")}
    out = subprocess.run([sys.executable, str(examples / "designed_workflow.py")], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "answer: 72"  # Natalia: 48 + 24


def test_designed_example_serves_another_design_from_the_environment(monkeypatch):
    monkeypatch.delenv("FLOWSTEER_EXECUTOR", raising=False)
    monkeypatch.setenv("FLOWSTEER_WORKFLOW", "Custom -> Review ? Revise : done")
    examples = Path(__file__).resolve().parent.parent / "examples"
    module = runpy.run_path(str(examples / "designed_workflow.py"), run_name="designed_workflow")
    assert "node_3_Review" in module["graph"].get_graph().nodes


def test_public_names_are_pinned():
    import flowsteer.integrations as integrations

    assert sorted(integrations.__all__) == sorted([
        "build_state_graph", "compile_workflow", "export_workflow", "EXPORT_FORMATS", "default_executor",
        "task_input", "WorkflowState", "WorkflowInput", "WorkflowOutput",
        "create_orchestrator_node", "OrchestratorState", "FlowSteerRunnable", "FlowSteerResult",
    ])
    assert integrations.EXPORT_FORMATS == ("langgraph-py", "json", "mermaid")


def test_exported_module_is_langgraph_code_that_agrees_with_the_interpreter(tmp_path):
    """The module builds the StateGraph itself (its shape is readable in the file) and gives the
    interpreter's answer, per-node outputs and calls on a workflow with every structure."""
    from flowsteer.tasks import Task
    from flowsteer.workflow.interpreter import Interpreter

    text = "Plan -> [Programmer, Custom] -> ScEnsemble -> (Verify ? Revise : done) * 2 -> Review ? Revise : done -> Format"
    workflow = parse(text)
    source = export_workflow(workflow, "langgraph-py")
    calls = {n.func.attr for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert {"add_node", "add_edge", "add_conditional_edges", "compile"} <= calls
    assert "compile_workflow" not in source
    for node in ("node_2_fanout", "node_2_fanin", "node_6_loop", "node_6_exit", "node_8_Verify"):
        assert f'builder.add_node("{node}"' in source, node
    assert 'builder.add_conditional_edges("node_8_Verify", route(), {"pass": "node_6_exit", "fail": "node_9_Revise"})' in source
    module = load_module(tmp_path, workflow)
    for question in ("What is 12 + 30?", "How many legs do 3 spiders have?"):
        task = Task(question)
        exported = module["build_graph"](SimulatedExecutor(seed=3)).invoke({"question": question})
        reference = Interpreter(SimulatedExecutor(seed=3)).run(workflow, task)
        assert exported["answer"] == reference.answer != ""
        assert exported["outputs"] == {f"{node}#{i}": out for (node, i), out in reference.outputs().items()}
        assert sorted(t["node_id"] for t in exported["trace"]) == sorted(t.node_id for t in reference.trace)
