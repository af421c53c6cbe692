"""Custom operators are first-class: prompts from the user's package, config for function operators."""

from __future__ import annotations

import importlib
import textwrap

import pytest

from flowsteer.errors import UserError
from flowsteer.operators import OperatorResult, Role, default_registry, register_operator


def _package(tmp_path, monkeypatch, name: str, prompt: str | None) -> object:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ops.py").write_text(textwrap.dedent('''
        from flowsteer.operators import OperatorResult
        from flowsteer.operators.llm import LLMOperator

        class UnitCheck(LLMOperator):
            name = "UnitCheck"
            prompt_file = "unit_check.txt"

            def parse(self, text, call):
                return OperatorResult(output=call.input, verdict="pass" in text, feedback=text)
    '''))
    if prompt is not None:
        (pkg / "unit_check.txt").write_text(prompt)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(f"{name}.ops")


def test_an_llm_operator_reads_its_prompt_from_the_users_package(tmp_path, monkeypatch):
    from flowsteer.tasks import Task
    from flowsteer.testing import ScriptedChatModel
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.interpreter import Interpreter

    module = _package(tmp_path, monkeypatch, "userops_ok", "FlowSteer operator: UnitCheck\nSay pass if units are given.")
    registry = default_registry().copy()
    register_operator(module.UnitCheck, role=Role.CHECKING, description="Checks units.", registry=registry)
    model = ScriptedChatModel(["<answer>3 kg</answer>", "pass"])
    result = Interpreter(model, registry=registry).run(parse("Custom -> UnitCheck", registry), Task("Weight?"))
    assert result.trace[-1].result.verdict is True
    assert "Say pass if units are given." in model.calls[-1][0].content


def test_a_missing_prompt_fails_at_registration(tmp_path, monkeypatch):
    module = _package(tmp_path, monkeypatch, "userops_missing", None)
    with pytest.raises(UserError, match="unit_check.txt"):
        register_operator(module.UnitCheck, role=Role.CHECKING, description="Checks units.",
                          registry=default_registry().copy())


def test_a_prompt_without_the_operator_header_fails_at_registration(tmp_path, monkeypatch):
    module = _package(tmp_path, monkeypatch, "userops_header", "Check the units.")
    with pytest.raises(UserError, match="must begin with 'FlowSteer operator: UnitCheck'"):
        register_operator(module.UnitCheck, role=Role.CHECKING, description="Checks units.",
                          registry=default_registry().copy())


@pytest.mark.parametrize("signature", ["positional", "keyword"])
def test_a_function_operator_gets_the_run_config_so_its_model_calls_nest(signature):
    from langchain_core.callbacks import BaseCallbackHandler

    from flowsteer.tasks import Task
    from flowsteer.testing import ScriptedChatModel
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.interpreter import Interpreter

    registry = default_registry().copy()
    if signature == "positional":
        def ask(call, context, config):
            reply = context.model.invoke("inner question", config=config)
            return OperatorResult(output=str(reply.content))
    else:
        def ask(call, context, *, config=None):
            reply = context.model.invoke("inner question", config=config)
            return OperatorResult(output=str(reply.content))
    register_operator(ask, name="Ask", role=Role.SOLVING, description="Asks the model.", registry=registry)

    runs: dict[str, object] = {}

    class Recorder(BaseCallbackHandler):
        def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, **kw):
            runs[str(run_id)] = ("chain", kw.get("name"), str(parent_run_id))

        def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
            runs[str(run_id)] = ("model", None, str(parent_run_id))

    Interpreter(ScriptedChatModel(["fine"]), registry=registry).run(
        parse("Ask", registry), Task("q"), config={"callbacks": [Recorder()]})
    model_runs = [v for v in runs.values() if v[0] == "model"]
    assert model_runs, runs
    parent = runs.get(model_runs[0][2])
    assert parent is not None and parent[1] and "Ask" in parent[1]


def _plugin(tmp_path, *, entry_point: bool) -> dict:
    import os

    (tmp_path / "unitops.py").write_text(textwrap.dedent('''
        from flowsteer.operators import OperatorResult, Role, register_operator

        @register_operator(name="UnitCheck", role=Role.CHECKING, description="Checks the answer has units.")
        def unit_check(call):
            ok = "kg" in (call.input or "")
            return OperatorResult(output=call.input, verdict=ok, feedback="" if ok else "add units")
    '''))
    if entry_point:
        info = tmp_path / "unitops-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unitops\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[flowsteer.operators]\nunits = unitops\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("how", ["--operators", "entry-point"])
def test_export_of_a_custom_operator_workflow_runs_in_a_fresh_process(tmp_path, how):
    import subprocess
    import sys

    env = _plugin(tmp_path, entry_point=how == "entry-point")
    out = tmp_path / "designed.py"
    command = [sys.executable, "-m", "flowsteer", "export", "Custom -> UnitCheck ? Revise : done", "--to",
               "langgraph-py", "-o", str(out)]
    if how == "--operators":
        command += ["--operators", "unitops"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "import unitops" in out.read_text()
    ran = subprocess.run([sys.executable, str(out), "How heavy is it?"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr


def test_an_unimportable_operators_module_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flowsteer", "export", "Custom", "--to", "json",
                           "--operators", "no_such_module_here"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--operators no_such_module_here: cannot import it" in done.stderr


def test_the_simulated_executor_runs_custom_llm_operators_through_a_hook(tmp_path, monkeypatch):
    from flowsteer.tasks import Task
    from flowsteer.testing import SimulatedCall, SimulatedExecutor
    from flowsteer.workflow.dsl import parse
    from flowsteer.workflow.interpreter import Interpreter

    module = _package(tmp_path, monkeypatch, "userops_sim", "FlowSteer operator: UnitCheck\nSay pass or fail.")
    registry = default_registry().copy()
    register_operator(module.UnitCheck, role=Role.CHECKING, description="Checks units.", registry=registry)
    seen: list[SimulatedCall] = []

    def unit_check(call: SimulatedCall) -> str:
        seen.append(call)
        return "pass" if call.gold in call.input else "fail"

    task = Task("What is 2 + 2?", answer="4")
    workflow = parse("Custom -> UnitCheck", registry)
    executor = SimulatedExecutor({task.question: "4"}, skill=1.0, handlers={"UnitCheck": unit_check})
    result = Interpreter(executor, registry=registry).run(workflow, task)
    assert seen and seen[0].gold == "4" and result.trace[-1].result.verdict is True
    borrowed = SimulatedExecutor({task.question: "4"}, skill=1.0, behaves_like={"UnitCheck": "Review"})
    raw = Interpreter(borrowed, registry=registry).run(workflow, task).trace[-1].result.data["raw"]
    assert "<verdict>" in raw  # answered as the simulated Review would
