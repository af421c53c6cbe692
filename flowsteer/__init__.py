"""FlowSteer: learned orchestration of agentic workflows.

A small policy model, the Flow-Director, designs a workflow for each task by editing an executable
Workflow Canvas one action per turn and reading the canvas's execution feedback. Workflows are typed
DAGs of operators that run on any LangChain chat model and compile to LangGraph graphs
(:mod:`flowsteer.integrations`); the director is trained with CWRPO (:mod:`flowsteer.training`).

``import flowsteer`` never imports torch: local models and training load it when used.
"""

from flowsteer.backends import load_chat_model
from flowsteer.builder import WorkflowBuilder
from flowsteer.canvas import Canvas, CanvasConfig, FinishConstraints, parse_action, render_action
from flowsteer.datasets import dataset_names, load_dataset, register_dataset
from flowsteer.director import Director, DirectorConfig, Trajectory
from flowsteer.dsl import parse, render
from flowsteer.errors import (
    DSLParseError,
    FlowSteerError,
    MissingExtraError,
    OperatorError,
    ParseFailure,
    UserError,
    WorkflowValidationError,
)
from flowsteer.graph import stats, to_mermaid
from flowsteer.interpreter import ExecutionResult, Interpreter, NodeCache
from flowsteer.ir import Conditional, Loop, OperatorNode, Parallel, Workflow
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
from flowsteer.serialize import from_json, to_json
from flowsteer.tasks import Task
from flowsteer.validation import Violation, validate

__version__ = "0.1.0"

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
