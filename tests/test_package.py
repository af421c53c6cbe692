"""Packaging contracts: the public API, torch-free import, the mapped sub-packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import flowsteer

BLOCK_HEAVY = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "transformers", "peft", "vllm"}:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_HEAVY + code], capture_output=True, text=True,
                          timeout=120)


def test_import_flowsteer_with_torch_blocked():
    proc = _run(
        "import flowsteer, flowsteer.canvas, flowsteer.director, flowsteer.evaluation, "
        "flowsteer.integrations, flowsteer.constrain, flowsteer.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch','transformers','peft'}))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_core_api_runs_with_torch_blocked():
    proc = _run(
        "import flowsteer as fs\n"
        "from flowsteer.testing import SimulatedExecutor\n"
        "wf = fs.parse('Plan -> [Custom, AnswerGenerate] -> ScEnsemble -> Verify ? Revise : done -> Format')\n"
        "task = fs.Task('What is 6 * 7?', answer='42')\n"
        "res = fs.Interpreter(SimulatedExecutor(answers={task.question: '42'}, skill=0.9)).run(wf, task)\n"
        "print(res.ok, bool(res.trace))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True True"


def test_public_names_resolve():
    for name in flowsteer.__all__:
        assert getattr(flowsteer, name) is not None, name


def test_mapped_packages_import_under_flowsteer():
    import flowsteer.integrations
    import flowsteer.training

    assert flowsteer.integrations.__name__ == "flowsteer.integrations"
    assert flowsteer.training.__name__ == "flowsteer.training"


def test_operator_prompts_ship_as_package_data():
    from importlib.resources import files

    prompts = [p.name for p in files("flowsteer.operators.prompts").iterdir() if p.name.endswith(".txt")]
    assert len(prompts) >= 12
