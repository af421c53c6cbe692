"""FlowSteer: learned orchestration of agentic workflows.

A small policy model, the Flow-Director, designs a workflow for each task by editing an executable
Workflow Canvas one action per turn and reading the canvas's execution feedback. Workflows are typed
DAGs of operators that run on any LangChain chat model and compile to LangGraph graphs
(:mod:`flowsteer.integrations`); the director is trained with CWRPO (:mod:`flowsteer.training`).

``import flowsteer`` never imports torch: local models and training load it when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names resolve lazily (PEP 562), so ``import flowsteer`` is cheap and importing one
# sub-package (say ``flowsteer.sandbox`` in a bare interpreter) does not pull in LangChain.
_EXPORTS: dict[str, str] = {
    "Canvas": "flowsteer.canvas",
    "CanvasConfig": "flowsteer.canvas",
    "Conditional": "flowsteer.workflow.ir",
    "DSLParseError": "flowsteer.errors",
    "Director": "flowsteer.director",
    "DirectorConfig": "flowsteer.director",
    "ExecutionResult": "flowsteer.workflow.interpreter",
    "FinishConstraints": "flowsteer.canvas",
    "FlowSteerError": "flowsteer.errors",
    "Interpreter": "flowsteer.workflow.interpreter",
    "Loop": "flowsteer.workflow.ir",
    "MissingExtraError": "flowsteer.errors",
    "NodeCache": "flowsteer.workflow.interpreter",
    "Operator": "flowsteer.operators",
    "OperatorCall": "flowsteer.operators",
    "OperatorError": "flowsteer.errors",
    "OperatorNode": "flowsteer.workflow.ir",
    "OperatorRegistry": "flowsteer.operators",
    "OperatorResult": "flowsteer.operators",
    "OperatorSpec": "flowsteer.operators",
    "Parallel": "flowsteer.workflow.ir",
    "ParseFailure": "flowsteer.errors",
    "RewardConfig": "flowsteer.reward",
    "Role": "flowsteer.operators",
    "Sandbox": "flowsteer.sandbox",
    "SandboxLimits": "flowsteer.sandbox",
    "Task": "flowsteer.tasks",
    "Trajectory": "flowsteer.director",
    "UserError": "flowsteer.errors",
    "Violation": "flowsteer.workflow.validation",
    "Workflow": "flowsteer.workflow.ir",
    "WorkflowBuilder": "flowsteer.workflow.builder",
    "WorkflowValidationError": "flowsteer.errors",
    "compute_reward": "flowsteer.reward",
    "dataset_names": "flowsteer.datasets",
    "default_registry": "flowsteer.operators",
    "from_json": "flowsteer.workflow.serialize",
    "load_chat_model": "flowsteer.models.specs",
    "load_dataset": "flowsteer.datasets",
    "parse": "flowsteer.workflow.dsl",
    "parse_action": "flowsteer.canvas",
    "register_dataset": "flowsteer.datasets",
    "register_operator": "flowsteer.operators",
    "render": "flowsteer.workflow.dsl",
    "render_action": "flowsteer.canvas",
    "score": "flowsteer.scoring",
    "stats": "flowsteer.workflow.graph",
    "to_json": "flowsteer.workflow.serialize",
    "to_mermaid": "flowsteer.workflow.graph",
    "validate": "flowsteer.workflow.validation",
}

if TYPE_CHECKING:  # for type checkers and IDEs
    from flowsteer.canvas import Canvas, CanvasConfig, FinishConstraints, parse_action, render_action
    from flowsteer.datasets import dataset_names, load_dataset, register_dataset
    from flowsteer.director import Director, DirectorConfig, Trajectory
    from flowsteer.errors import (
        DSLParseError,
        FlowSteerError,
        MissingExtraError,
        OperatorError,
        ParseFailure,
        UserError,
        WorkflowValidationError,
    )
    from flowsteer.models.specs import load_chat_model
    from flowsteer.operators import (
        Operator,
        OperatorCall,
        OperatorRegistry,
        OperatorResult,
        OperatorSpec,
        Role,
        default_registry,
        register_operator,
    )
    from flowsteer.reward import RewardConfig, compute_reward
    from flowsteer.sandbox import Sandbox, SandboxLimits
    from flowsteer.scoring import score
    from flowsteer.tasks import Task
    from flowsteer.workflow.builder import WorkflowBuilder
    from flowsteer.workflow.dsl import parse, render
    from flowsteer.workflow.graph import stats, to_mermaid
    from flowsteer.workflow.interpreter import ExecutionResult, Interpreter, NodeCache
    from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
    from flowsteer.workflow.serialize import from_json, to_json
    from flowsteer.workflow.validation import Violation, validate

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowsteer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "Canvas",
    "CanvasConfig",
    "Conditional",
    "DSLParseError",
    "Director",
    "DirectorConfig",
    "ExecutionResult",
    "FinishConstraints",
    "FlowSteerError",
    "Interpreter",
    "Loop",
    "MissingExtraError",
    "NodeCache",
    "Operator",
    "OperatorCall",
    "OperatorError",
    "OperatorNode",
    "OperatorRegistry",
    "OperatorResult",
    "OperatorSpec",
    "Parallel",
    "ParseFailure",
    "RewardConfig",
    "Role",
    "Sandbox",
    "SandboxLimits",
    "Task",
    "Trajectory",
    "UserError",
    "Violation",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowValidationError",
    "compute_reward",
    "dataset_names",
    "default_registry",
    "from_json",
    "load_chat_model",
    "load_dataset",
    "parse",
    "parse_action",
    "register_dataset",
    "register_operator",
    "render",
    "render_action",
    "score",
    "stats",
    "to_json",
    "to_mermaid",
    "validate",
    "__version__",
]
