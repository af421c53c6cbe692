"""Compile FlowSteer workflows into LangGraph graphs and export them as code, JSON or Mermaid."""

from .compiler import FINALIZE_NODE, PREPARE_NODE, NodeRunner, build_state_graph, compile_workflow
from .state import LaneState, TraceEntry, WorkflowInput, WorkflowOutput, WorkflowState, task_input

__all__ = [
    "build_state_graph",
    "compile_workflow",
    "NodeRunner",
    "PREPARE_NODE",
    "FINALIZE_NODE",
    "WorkflowState",
    "WorkflowInput",
    "WorkflowOutput",
    "LaneState",
    "TraceEntry",
    "task_input",
]
