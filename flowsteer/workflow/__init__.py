"""The workflow concept, in one place: what a workflow *is* and how it runs.

* :mod:`~flowsteer.workflow.ir` -- the immutable value (chains of operator, parallel, conditional
  and loop steps);
* :mod:`~flowsteer.workflow.builder` -- edits with stable ids (what the canvas uses);
* :mod:`~flowsteer.workflow.dsl` -- the one-line text form the director writes and reads;
* :mod:`~flowsteer.workflow.validation` -- the structural rules, as a list of violations;
* :mod:`~flowsteer.workflow.serialize` -- the versioned JSON document;
* :mod:`~flowsteer.workflow.graph` -- the DAG view (networkx, Mermaid, statistics);
* :mod:`~flowsteer.workflow.interpreter` -- the one definition of what running a workflow means
  (the LangGraph compiler reuses it node by node).

Names resolve lazily, so importing one module does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Conditional": "ir",
    "Loop": "ir",
    "OperatorNode": "ir",
    "Parallel": "ir",
    "Workflow": "ir",
    "WorkflowBuilder": "builder",
    "parse": "dsl",
    "render": "dsl",
    "Violation": "validation",
    "validate": "validation",
    "from_json": "serialize",
    "to_json": "serialize",
    "stats": "graph",
    "to_mermaid": "graph",
    "to_networkx": "graph",
    "ExecutionResult": "interpreter",
    "Interpreter": "interpreter",
    "NodeCache": "interpreter",
}

if TYPE_CHECKING:
    from flowsteer.workflow.builder import WorkflowBuilder
    from flowsteer.workflow.dsl import parse, render
    from flowsteer.workflow.graph import stats, to_mermaid, to_networkx
    from flowsteer.workflow.interpreter import ExecutionResult, Interpreter, NodeCache
    from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
    from flowsteer.workflow.serialize import from_json, to_json
    from flowsteer.workflow.validation import Violation, validate

__all__ = [
    "Conditional",
    "ExecutionResult",
    "Interpreter",
    "Loop",
    "NodeCache",
    "OperatorNode",
    "Parallel",
    "Violation",
    "Workflow",
    "WorkflowBuilder",
    "from_json",
    "parse",
    "render",
    "stats",
    "to_json",
    "to_mermaid",
    "to_networkx",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
