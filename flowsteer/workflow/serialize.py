"""The JSON form of a workflow (files, the CLI), validated with pydantic v2.

A document looks like::

    {
      "version": 1,
      "dsl": "Plan -> Verify ? Revise : done",
      "next_id": 5,
      "steps": [
        {"type": "operator", "id": "node_1", "operator": "Plan", "prompt": "...", "params": {}},
        {"type": "conditional", "id": "node_2",
         "check": {"type": "operator", "id": "node_3", "operator": "Verify"},
         "on_fail": [{"type": "operator", "id": "node_4", "operator": "Revise"}],
         "on_pass": []}
      ]
    }

``steps`` is the source of truth; ``dsl`` is there for people reading the file (it must agree
with ``steps`` when both are given). A hand-written file may give only ``dsl`` (parsed with
:func:`flowsteer.workflow.dsl.parse`), may leave ids out (fresh ones are assigned from the counter) and may
leave ``next_id`` out (one past the largest ``node_N``). Invalid documents raise
:class:`~flowsteer.errors.UserError` naming the field path and the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from flowsteer.errors import DSLParseError, UserError
from flowsteer.workflow.ir import (
    MAX_LOOP_ITERATIONS,
    MIN_LOOP_ITERATIONS,
    Chain,
    Conditional,
    Loop,
    OperatorNode,
    Parallel,
    Step,
    Workflow,
)

__all__ = [
    "FORMAT_VERSION",
    "OperatorModel",
    "ParallelModel",
    "ConditionalModel",
    "LoopModel",
    "StepModel",
    "WorkflowModel",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
]

FORMAT_VERSION = 1
"""The version written by :func:`to_dict`; documents with another version are refused."""

_ID_RE = re.compile(r"^node_(\d+)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorModel(_Model):
    """One operator call."""

    type: Literal["operator"] = "operator"
    id: str = ""
    operator: str = Field(min_length=1)
    prompt: str = ""
    params: dict[str, Any] = Field(default_factory=dict)


class ParallelModel(_Model):
    """Branches run on the same input."""

    type: Literal["parallel"]
    id: str = ""
    branches: list[list[StepModel]]


class ConditionalModel(_Model):
    """``check``; ``on_fail`` runs when it fails, ``on_pass`` (empty = done) when it passes."""

    type: Literal["conditional"]
    id: str = ""
    check: OperatorModel
    on_fail: list[StepModel]
    on_pass: list[StepModel] = Field(default_factory=list)


class LoopModel(_Model):
    """``body`` repeated up to ``max_iterations`` times."""

    type: Literal["loop"]
    id: str = ""
    body: list[StepModel]
    max_iterations: int = Field(default=3, ge=MIN_LOOP_ITERATIONS, le=MAX_LOOP_ITERATIONS)


def _step_tag(value: Any) -> str:
    """The ``type`` of a step; a step without one is an operator (handy in hand-written files)."""
    if isinstance(value, dict):
        return str(value.get("type", "operator"))
    return str(getattr(value, "type", "operator"))


StepModel = Annotated[
    Annotated[OperatorModel, Tag("operator")]
    | Annotated[ParallelModel, Tag("parallel")]
    | Annotated[ConditionalModel, Tag("conditional")]
    | Annotated[LoopModel, Tag("loop")],
    Discriminator(_step_tag),
]


class WorkflowModel(_Model):
    """A whole workflow document."""

    version: int = FORMAT_VERSION
    dsl: str | None = None
    """The text form, for readability (checked against ``steps``)."""
    next_id: int | None = Field(default=None, ge=1)
    """The builder's id counter; must exceed every ``node_N`` id."""
    steps: list[StepModel] | None = None


for _model in (ParallelModel, ConditionalModel, LoopModel, WorkflowModel):
    _model.model_rebuild()


# -- IR -> document --------------------------------------------------------------------------
def to_dict(workflow: Workflow) -> dict[str, Any]:
    """The JSON-ready dict of a workflow (prompts, params and ids included)."""
    from flowsteer.workflow.dsl import render

    model = WorkflowModel(
        version=FORMAT_VERSION,
        dsl=render(workflow),
        next_id=workflow.next_id,
        steps=[_step_model(s) for s in workflow.steps],
    )
    return model.model_dump(mode="json")


def to_json(workflow: Workflow, indent: int | None = 2) -> str:
    """The JSON text of a workflow."""
    return json.dumps(to_dict(workflow), indent=indent, ensure_ascii=False)


def _step_model(step: Step) -> OperatorModel | ParallelModel | ConditionalModel | LoopModel:
    match step:
        case OperatorNode():
            return _operator_model(step)
        case Parallel(branches=branches, id=sid):
            return ParallelModel(type="parallel", id=sid, branches=[_chain_models(b) for b in branches])
        case Conditional(check=check, on_fail=on_fail, on_pass=on_pass, id=sid):
            return ConditionalModel(
                type="conditional",
                id=sid,
                check=_operator_model(check),
                on_fail=_chain_models(on_fail),
                on_pass=_chain_models(on_pass),
            )
        case Loop(body=body, max_iterations=count, id=sid):
            return LoopModel(type="loop", id=sid, body=_chain_models(body), max_iterations=count)
    raise UserError(f"{step!r} is not a workflow step; build workflows with WorkflowBuilder")


def _operator_model(node: OperatorNode) -> OperatorModel:
    return OperatorModel(id=node.id, operator=node.operator, prompt=node.prompt, params=dict(node.params))


def _chain_models(chain: Chain) -> list[Any]:
    return [_step_model(s) for s in chain]


# -- document -> IR --------------------------------------------------------------------------
def from_json(text: str) -> Workflow:
    """Load a workflow from JSON text (see the module docstring for the format)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"workflow JSON is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "fix the syntax (quotes, commas, brackets)"
        ) from None
    return from_dict(data)


def from_dict(data: Any) -> Workflow:
    """Load a workflow from a parsed JSON document (a dict)."""
    if not isinstance(data, dict):
        raise UserError(f"a workflow document must be a JSON object, got {type(data).__name__}")
    try:
        model = WorkflowModel.model_validate(data)
    except ValidationError as exc:
        raise UserError(_explain(exc)) from None
    if model.version != FORMAT_VERSION:
        raise UserError(
            f"version: unsupported workflow format version {model.version}; this FlowSteer reads "
            f"version {FORMAT_VERSION}"
        )
    if model.steps is None:
        return _from_dsl_only(model)
    steps = tuple(_step(s) for s in model.steps)
    workflow = _with_ids(steps, model.next_id)
    _check_dsl(model.dsl, workflow)
    return workflow


def _from_dsl_only(model: WorkflowModel) -> Workflow:
    from flowsteer.workflow.dsl import parse

    if model.dsl is None:
        raise UserError("steps: field required; give 'steps' (a list of step objects) or a 'dsl' string")
    try:
        workflow = parse(model.dsl)
    except DSLParseError as exc:
        raise UserError(f"dsl: {exc}") from None
    if model.next_id is not None:
        if model.next_id < workflow.next_id:
            raise UserError(
                f"next_id: {model.next_id} would reuse ids of the parsed dsl; use at least {workflow.next_id}"
            )
        workflow = Workflow(workflow.steps, model.next_id)
    return workflow


def _step(model: Any) -> Step:
    match model:
        case OperatorModel():
            return _operator_node(model)
        case ParallelModel():
            return Parallel(tuple(_chain(b) for b in model.branches), id=model.id)
        case ConditionalModel():
            check = _operator_node(model.check)
            return Conditional(check, _chain(model.on_fail), _chain(model.on_pass), id=model.id)
        case LoopModel():
            return Loop(_chain(model.body), model.max_iterations, id=model.id)
    raise UserError(f"{model!r} is not a step model")


def _operator_node(model: OperatorModel) -> OperatorNode:
    return OperatorNode(model.operator, prompt=model.prompt, id=model.id, params=model.params)


def _chain(models: list[Any]) -> Chain:
    return tuple(_step(m) for m in models)


def _with_ids(steps: Chain, next_id: int | None) -> Workflow:
    """Check ids are unique and below the counter; give blank ids fresh numbers."""
    from flowsteer.workflow.builder import _descend  # the one sub-chain mapper, shared with the builder

    ids = [ref.node.id for ref in Workflow(steps).walk() if ref.node.id]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UserError(f"steps: duplicate id(s) {', '.join(duplicates)}; give every node a unique id")
    largest = max((int(m.group(1)) for i in ids if (m := _ID_RE.match(i))), default=0)
    if next_id is None:
        next_id = largest + 1
    elif next_id <= largest:
        raise UserError(
            f"next_id: {next_id} would reuse an existing id (node_{largest}); use at least {largest + 1}"
        )
    counter = [next_id]

    def fresh() -> str:
        counter[0] += 1
        return f"node_{counter[0] - 1}"

    def fill(step: Step) -> Step:
        step = replace(step, id=step.id or fresh())  # the parent first: pre-order, like the builder
        if isinstance(step, Conditional):
            check = step.check
            step = replace(step, check=replace(check, id=check.id or fresh()))
        return _descend(step, lambda chain: tuple(fill(s) for s in chain))

    filled = tuple(fill(s) for s in steps)
    return Workflow(filled, counter[0])


def _check_dsl(dsl: str | None, workflow: Workflow) -> None:
    from flowsteer.workflow.dsl import parse, render

    if dsl is None:
        return
    actual = render(workflow)
    try:
        written = render(parse(dsl))
    except DSLParseError as exc:
        raise UserError(f"dsl: {exc}\nfix the text or remove the dsl field (steps are enough)") from None
    if written != actual:
        raise UserError(
            f"dsl: {dsl!r} does not match steps, which read {actual!r}; "
            "update the dsl field to that text or remove it"
        )


_HINTS = {
    "missing": "add this field",
    "extra_forbidden": "remove this field (it is not part of the format)",
    "union_tag_invalid": "set 'type' to one of: operator, parallel, conditional, loop",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "string_too_short": "give a non-empty string",
}


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        path = _path(error["loc"])
        hint = _HINTS.get(error["type"], "fix the value")
        lines.append(f"  - {path or '<document>'}: {error['msg']}; {hint}")
    return f"workflow document is invalid ({len(lines)} problem(s)):\n" + "\n".join(lines)


def _path(loc: tuple[Any, ...]) -> str:
    """``('steps', 2, 'conditional', 'check', 'operator')`` -> ``steps[2].check.operator``."""
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            after_index = True
            continue
        # pydantic puts the union's tag right after a list index; it is not a field
        if not (after_index and part in ("operator", "parallel", "conditional", "loop")):
            out += f".{part}" if out else str(part)
        after_index = False
    return out
