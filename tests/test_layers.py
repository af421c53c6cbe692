"""The import direction of the package: the core never imports the LangChain/LangGraph adapters
(``flowsteer.integrations``) or the trainer (``flowsteer.training``); only the CLI, the application
layer on top, may reach both. Checked on the source (every import, lazy ones inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flowsteer

CORE = Path(flowsteer.__file__).parent
UPPER = {"integrations", "training"}
APPLICATION = {"cli"}  # flowsteer/cli/ drives everything
WORKFLOW_MODULES = ("ir", "builder", "dsl", "validation", "serialize", "graph", "interpreter")
"""Once at the package root, now in ``flowsteer.workflow``."""


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_core_never_imports_integrations_or_training():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE)
        if relative.parts[0] in APPLICATION:
            continue
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] in UPPER or (parts[0] == "flowsteer" and len(parts) > 1 and parts[1] in UPPER):
                offenders.append(f"flowsteer/{relative}:{line} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_the_check_sees_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from flowsteer.training.plot import plot_run\n"
                      "    import importlib\n    importlib.import_module('flowsteer.integrations')\n")
    assert [m for _, m in _imports(sample)] == ["flowsteer.training.plot", "importlib", "flowsteer.integrations"]


def _module_graph():
    import networkx as nx

    modules = {}
    for path in CORE.rglob("*.py"):
        parts = ("flowsteer", *path.relative_to(CORE).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = nx.DiGraph()
    for name, path in modules.items():
        if name.startswith("flowsteer.cli"):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    prefix = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(prefix + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                found = resolve(target) if target.startswith("flowsteer") else ""
                if found and found not in (name, "flowsteer") and not found.startswith("flowsteer.cli"):
                    graph.add_edge(name, found)
    return graph


def test_no_import_cycles_between_core_modules():
    """Lazy imports inside functions count: a cycle hidden in a function is still two modules that
    cannot be understood one without the other (package __init__ re-exports are not edges back)."""
    import networkx as nx

    cycles = [sorted(c) for c in nx.strongly_connected_components(_module_graph()) if len(c) > 1]
    assert cycles == []


@pytest.mark.parametrize(("old", "new"), [
    ("flowsteer.backends", "flowsteer.models.specs"),
    ("flowsteer.retry", "flowsteer.models.retry"),
    ("flowsteer.serving.server", "flowsteer.models.serving.server"),
    ("flowsteer.integrations.chat_models.embedded", "flowsteer.models.embedded"),
    ("flowsteer.training.plot", "flowsteer.report.plot"),
    *[(f"flowsteer.{m}", f"flowsteer.workflow.{m}") for m in WORKFLOW_MODULES],
])
def test_moved_modules_keep_their_old_path_with_a_deprecation_warning(old, new):
    import importlib
    import sys
    import warnings

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:  # the old parent package may warn too
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and f"{old} moved to {new}" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    assert module is importlib.import_module(new)  # one module object under both names


def test_moved_packages_forward_their_names():
    import warnings

    from flowsteer.models import LocalChatModel, load_chat_model
    from flowsteer.models.serving import VLLMServer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from flowsteer.integrations.chat_models import LocalChatModel as old_local
        from flowsteer.serving import VLLMServer as old_server
    assert old_local is LocalChatModel and old_server is VLLMServer
    assert load_chat_model.__module__ == "flowsteer.models.specs"


def test_the_workflow_package_names_its_concept_once():
    import flowsteer.workflow as workflow
    from flowsteer.workflow.interpreter import Interpreter
    from flowsteer.workflow.ir import Workflow

    assert workflow.Workflow is Workflow and workflow.Interpreter is Interpreter
    assert workflow.parse("Plan -> Format") == workflow.parse("Plan -> Format")
    assert flowsteer.Workflow is Workflow  # the top-level names resolve to the new home
    assert Workflow.__module__ == "flowsteer.workflow.ir"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        workflow.Nope  # noqa: B018
    # the package root keeps only aliases of the moved modules (no code of their own)
    for old in WORKFLOW_MODULES:
        source = (CORE / f"{old}.py").read_text(encoding="utf-8")
        assert f'alias(__name__, "flowsteer.workflow.{old}")' in source and len(source.splitlines()) <= 6


MOVED = ("flowsteer.backends", "flowsteer.retry", "flowsteer.serving", "flowsteer.integrations.chat_models",
         "flowsteer.training.plot", *(f"flowsteer.{m}" for m in WORKFLOW_MODULES))


def test_the_project_itself_imports_only_the_new_paths():
    root = CORE.parent
    offenders = []
    for folder in ("flowsteer", "integrations", "training", "examples", "benchmarks", "scripts"):
        for path in sorted((root / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            if "flowsteer._moved import" in source:
                continue  # an old path itself
            for line, module in _imports(path):
                if any(module == old or module.startswith(old + ".") for old in MOVED):
                    offenders.append(f"{path.relative_to(root)}:{line} imports {module}")
    assert offenders == [], "\n".join(offenders)


def test_tests_and_benchmarks_name_no_machine_specific_paths():
    """Data is found beside the checkout (``../shared``) or through a variable, never by the layout of
    one development machine (a clean clone elsewhere must find the same files or skip)."""
    root = CORE.parent
    prefix = "/" + "work" + "/"  # spelled apart so that this file does not match itself
    offenders = []
    for folder in ("tests", "benchmarks", "scripts", "examples"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(prefix):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.value[:60]}")
    assert offenders == [], "\n".join(offenders)
