"""FlowSteer inside the LangChain/LangGraph ecosystem (importable as ``flowsteer.integrations``).

* :func:`build_state_graph` / :func:`compile_workflow` -- a designed workflow as a LangGraph graph;
* :func:`export_workflow` -- the same workflow as a standalone LangGraph module, JSON or Mermaid;
* :func:`create_orchestrator_node` -- the Flow-Director as a drop-in node of your own graph;
* :class:`FlowSteerRunnable` -- the same as a LangChain runnable for LCEL chains.
"""

from .langgraph import (
    WorkflowInput,
    WorkflowOutput,
    WorkflowState,
    build_state_graph,
    compile_workflow,
    task_input,
)
from .langgraph.export import EXPORT_FORMATS, default_executor, export_workflow
from .orchestrator import OrchestratorState, create_orchestrator_node
from .runnable import FlowSteerResult, FlowSteerRunnable

__all__ = [
    "build_state_graph",
    "compile_workflow",
    "export_workflow",
    "EXPORT_FORMATS",
    "default_executor",
    "task_input",
    "WorkflowState",
    "WorkflowInput",
    "WorkflowOutput",
    "create_orchestrator_node",
    "OrchestratorState",
    "FlowSteerRunnable",
    "FlowSteerResult",
]
