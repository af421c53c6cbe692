"""The Workflow Canvas: the environment a Flow-Director edits one action per turn.

>>> canvas = Canvas(executor=chat_model)                          # doctest: +SKIP
>>> obs = canvas.reset(Task("What is 2 + 3?"))                     # doctest: +SKIP
>>> obs, done, info = canvas.step("<action>add</action><operator>Plan</operator>")  # doctest: +SKIP
"""

from flowsteer.canvas._edits import ends_workflow, longest_repeat, repeat_refusal, repeat_runs
from flowsteer.canvas.actions import (
    ACTION_NAMES,
    Action,
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Delete,
    Finish,
    Modify,
    SetPrompt,
    render_action,
)
from flowsteer.canvas.constraints import FinishConstraints, is_verbose
from flowsteer.canvas.env import Canvas, CanvasConfig, CanvasState, Observation, StepInfo
from flowsteer.canvas.feedback import PromptRequest, error_hint, neutralize, render_feedback
from flowsteer.canvas.parser import action_forms, extract_prompt, parse_action
from flowsteer.errors import ParseFailure

__all__ = [
    "ACTION_NAMES",
    "Action",
    "AddConditional",
    "AddLoop",
    "AddOperator",
    "AddParallel",
    "Canvas",
    "CanvasConfig",
    "CanvasState",
    "Delete",
    "Finish",
    "FinishConstraints",
    "Modify",
    "Observation",
    "ParseFailure",
    "PromptRequest",
    "SetPrompt",
    "StepInfo",
    "action_forms",
    "error_hint",
    "extract_prompt",
    "is_verbose",
    "ends_workflow",
    "longest_repeat",
    "repeat_refusal",
    "repeat_runs",
    "neutralize",
    "parse_action",
    "render_action",
    "render_feedback",
]
