"""Run each example script as a user would (a subprocess) and check what it prints and writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowsteer.workflow.serialize import from_json

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DESIGN = "Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format"


def run_example(name: str, *args: str, cwd: Path | None = None, timeout: float = 240) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_embed_in_langgraph_app_offline():
    out = run_example("embed_in_langgraph_app.py")
    turns = re.findall(r"canvas turn\s+(\d+) (\w+)\s+\| (.*)", out)
    assert [int(t) for t, _, _ in turns] == list(range(1, 14))
    assert turns[0][1:] == ("action", "Plan") and turns[-1][2] == DESIGN
    assert f"reply: The answer is 72 (workflow: {DESIGN})." in out
    assert re.search(r"usage: director calls 13, executor calls \d+", out)
    assert f"approval requested for: {DESIGN}" in out
    assert "approved -> The answer is 42" in out
    assert "invoke: 42" in out
    assert [a for a in re.findall(r"batch: .* -> (\S+)", out)] == ["72", "42", "180"]


def test_export_workflow_offline(tmp_path: Path):
    out = run_example("export_workflow.py", "--out", str(tmp_path))
    assert f"workflow: {DESIGN}" in out
    assert "in-memory graph answer: 72" in out and "(answer 72; matches in-memory: True)" in out
    module = (tmp_path / "designed_graph.py").read_text()
    assert "def build_graph(" in module and "graph = build_graph()" in module
    mermaid = (tmp_path / "designed_graph.mmd").read_text()
    assert "node_2_fanout" in mermaid and "node_7_Verify -. &nbsp;fail&nbsp; .-> node_8_Revise" in mermaid
    assert from_json((tmp_path / "designed_graph.json").read_text()).dsl == DESIGN
    studio = json.loads((tmp_path / "langgraph.json").read_text())
    target, _, attribute = studio["graphs"]["designed"].partition(":")
    assert (tmp_path / target).resolve() == tmp_path / "designed_graph.py" and attribute == "graph"
    assert (tmp_path / studio["dependencies"][0] / "pyproject.toml").exists()
    assert re.search(r"langgraph dev --config examples/langgraph\.json  \(\d+ graph nodes\)", out)
    assert "cli: flowsteer export 'Plan -> [Programmer, Custom]" in out


def test_export_workflow_of_a_given_design(tmp_path: Path):
    out = run_example("export_workflow.py", "--out", str(tmp_path), "--workflow", "Custom -> Review ? Revise : done",
                      "--question", "What is 12 + 30?")
    assert "designed in" not in out and "workflow: Custom -> Review ? Revise : done" in out
    assert "matches in-memory: True" in out
    # a checker workflow without Format: the answer shown is the answer, not the node's raw markup
    assert "in-memory graph answer: 42" in out and "<answer>" not in out
    assert "node_3_Review" in (tmp_path / "designed_graph.mmd").read_text()


def test_custom_operators_quickstart_offline():
    out = run_example("custom_operators_quickstart.py")
    assert "- ListQuantities (planning): Lists every number" in out
    assert "- WholeNumberCheck (checking): Passes when" in out
    assert "action parser: AddOperator(operator='WholeNumberCheck'" in out
    assert "DSL round trip: True" in out and "validation with this registry: ok" in out
    assert "validation without it: 2 violations, e.g. unknown operator 'ListQuantities'" in out
    assert re.search(r"roles \{'planning': 1, 'solving': 1, 'checking': 1, 'revising': 1.*structure True", out)
    assert "designed: ListQuantities -> [Programmer, Custom] -> ScEnsemble -> WholeNumberCheck ? Revise" in out
    assert "custom operators used: ListQuantities, WholeNumberCheck" in out
    assert "answer: 72" in out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_examples_with_the_embedded_director(tmp_path: Path):
    out = run_example("embed_in_langgraph_app.py", "--embedded", "--max-turns", "6", timeout=1500)
    assert "canvas turn  1" in out and "reply: The answer is" in out and "invoke:" in out
    out = run_example("export_workflow.py", "--embedded", "--max-turns", "6", "--out", str(tmp_path), timeout=900)
    assert "matches in-memory: True" in out and (tmp_path / "designed_graph.py").exists()
    out = run_example("custom_operators_quickstart.py", "--embedded", "--max-turns", "6", timeout=900)
    assert "designed: " in out and "answer: " in out
