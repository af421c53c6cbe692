"""FlowSteer inside the LangChain/LangGraph ecosystem (importable as ``flowsteer.integrations``).

* :func:`build_state_graph` / :func:`compile_workflow` -- a designed workflow as a LangGraph graph;
* :func:`export_workflow` -- the same workflow as a standalone LangGraph module, JSON or Mermaid.
"""

from .langgraph import (
    WorkflowInput,
    WorkflowState,
    build_state_graph,
    compile_workflow,
    task_input,
)
from .langgraph.export import EXPORT_FORMATS, default_executor, export_workflow

__all__ = [
    "build_state_graph",
    "compile_workflow",
    "export_workflow",
    "EXPORT_FORMATS",
    "default_executor",
    "task_input",
    "WorkflowState",
    "WorkflowInput",
]
