"""Applying canvas actions to a workflow: the edit either yields a new valid workflow or a reason.

Edits go through :class:`~flowsteer.workflow.builder.WorkflowBuilder` (monotonic ids, nested deletes) on a
copy; a builder error or any validation violation refuses the edit and leaves the workflow as it
was. A refusal is the model's mistake, so it is a message, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from flowsteer.canvas.actions import (
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
from flowsteer.canvas.feedback import PromptRequest
from flowsteer.errors import ParseFailure, UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.interpreter import ExecutionResult
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Step, Workflow, iter_steps

__all__ = [
    "Edit", "EditOutcome", "Editor", "node_context", "longest_repeat", "repeat_refusal", "repeat_runs",
    "ends_early", "ends_workflow",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Edit:
    """The result of applying one action: ``workflow`` is None when the edit was refused."""

    workflow: Workflow | None
    message: str
    requests: tuple[PromptRequest, ...] = ()


@dataclass(frozen=True)
class EditOutcome:
    """What one turn did, before the canvas turns it into a StepInfo and feedback."""

    accepted: bool
    message: str
    action: Action | None = None
    parse_failure: ParseFailure | None = None
    execution: ExecutionResult | None = None
    finished: bool = False
    prompt: str | None = None


def node_context(workflow: Workflow, node_id: str) -> str:
    """Where a node sits, for prompt requests: ``"parallel branch 2/3 of node_4"`` ("" at top level)."""
    parent = workflow.parent_of(node_id)
    match parent:
        case Parallel(branches=branches):
            for k, branch in enumerate(branches, 1):
                if _holds(branch, node_id):
                    return f"parallel branch {k}/{len(branches)} of {parent.id}"
        case Conditional(check=check, on_fail=on_fail):
            if check.id == node_id:
                return f"condition (checker) of {parent.id}: its verdict picks the branch"
            side = "fails" if _holds(on_fail, node_id) else "passes"
            return f"run when the check of {parent.id} {side}"
        case Loop(body=body):
            for i, step in enumerate(body, 1):
                if step.id == node_id:
                    return f"loop body step {i}/{len(body)} of {parent.id}"
    return ""


def _holds(chain: tuple[Step, ...], node_id: str) -> bool:
    return any(ref.node.id == node_id for ref in iter_steps(chain))


def _chains(chain: tuple[Step, ...]) -> list[tuple[Step, ...]]:
    """``chain`` and every chain nested in it (parallel branches, conditional sides, loop bodies)."""
    out = [chain]
    for step in chain:
        match step:
            case Parallel(branches=branches):
                inner = list(branches)
            case Conditional(on_fail=on_fail, on_pass=on_pass):
                inner = [on_fail, on_pass]
            case Loop(body=body):
                inner = [body]
            case _:
                inner = []
        for sub in inner:
            out.extend(_chains(sub))
    return out


def _runs(workflow: Workflow) -> Iterator[tuple[str, int]]:
    """``(operator, run)`` at each operator step of every chain: how many of it end there in a row."""
    for chain in _chains(workflow.steps):
        run, previous = 0, None
        for step in chain:
            current = step.operator if isinstance(step, OperatorNode) else None
            run = run + 1 if current is not None and current == previous else (1 if current else 0)
            previous = current
            if current is not None:
                yield current, run


def longest_repeat(workflow: Workflow) -> tuple[int, str]:
    """The longest run of one operator in consecutive steps of any chain, and that operator."""
    best, name = 0, ""
    for operator, run in _runs(workflow):
        if run > best:
            best, name = run, operator
    return best, name


def repeat_runs(workflow: Workflow) -> dict[str, int]:
    """The longest run of each operator in consecutive steps of any chain."""
    runs: dict[str, int] = {}
    for operator, run in _runs(workflow):
        runs[operator] = max(run, runs.get(operator, 0))
    return runs


def repeat_limit(registry: OperatorRegistry, name: str, max_repeats: int) -> int:
    """How many ``name`` operators may follow each other: ``max_repeats``, or less where the
    operator says so (:attr:`~flowsteer.operators.OperatorSpec.max_in_row`)."""
    spec = registry.lookup_case_insensitive(name)
    own = spec.max_in_row if spec is not None else None
    return max_repeats if own is None else min(own, max_repeats)


def repeat_refusal(old: Workflow, new: Workflow, registry: OperatorRegistry,
                   max_repeats: int) -> tuple[str, int, int] | None:
    """``(operator, run, limit)`` of a run of identical operators ``new`` may not have, or None.

    A run is refused only when it is longer than the operator's limit and than its run in ``old``,
    so an edit never fails for a run it did not make (the canvas and the action grammar both ask)."""
    before = repeat_runs(old)
    for name, run in repeat_runs(new).items():
        limit = repeat_limit(registry, name, max_repeats)
        if run > max(limit, before.get(name, 0)):
            return name, run, limit
    return None


def ends_early(workflow: Workflow, registry: OperatorRegistry) -> list[str]:
    """Node ids of top-level operators that end the workflow
    (:attr:`~flowsteer.operators.OperatorSpec.ends_workflow`) and yet have a step after them."""
    out = []
    for step in workflow.steps[:-1]:
        if isinstance(step, OperatorNode):
            spec = registry.lookup_case_insensitive(step.operator)
            if spec is not None and spec.ends_workflow:
                out.append(step.id)
    return out


def ends_workflow(workflow: Workflow, registry: OperatorRegistry) -> str | None:
    """The operator the workflow ends with when it is one that ends workflows, else None (the canvas
    then takes no top-level append, and the action grammar offers none)."""
    last = workflow.steps[-1] if workflow.steps else None
    if not isinstance(last, OperatorNode):
        return None
    spec = registry.lookup_case_insensitive(last.operator)
    return spec.name if spec is not None and spec.ends_workflow else None


class Editor:
    """Applies actions (except finish) to workflows for one registry."""

    def __init__(self, registry: OperatorRegistry, max_nodes: int, max_repeats: int = 3) -> None:
        self.registry = registry
        self.max_nodes = max_nodes
        self.max_repeats = max_repeats
        self.kind: str | None = None
        """The current task's kind: operators with nothing to do on it are refused (the canvas sets it)."""

    def with_prompt(self, workflow: Workflow, node_id: str, prompt: str) -> Workflow:
        """``workflow`` with a node's prompt replaced (the node is known to exist)."""
        builder = WorkflowBuilder(workflow, registry=self.registry, kind=self.kind)
        builder.set_prompt(node_id, prompt)
        return builder.workflow

    def apply(self, workflow: Workflow, action: Action, min_prompt: int, max_prompt: int) -> Edit:
        match action:
            case AddOperator():
                return self._add_operator(workflow, action, min_prompt, max_prompt)
            case AddParallel(operators=ops):
                return self._add_structure(workflow, lambda b: b.add_parallel([[o] for o in ops]),
                                           f"parallel block of {', '.join(ops)}")
            case AddConditional(condition=cond, on_fail=on_fail, on_pass=on_pass):
                shown = f"{cond} ? {on_fail} : {on_pass or 'done'}"
                return self._add_structure(workflow, lambda b: b.add_conditional(cond, on_fail, on_pass),
                                           f"conditional {shown}")
            case AddLoop(operators=ops, count=count):
                return self._add_structure(workflow, lambda b: b.add_loop(list(ops), count),
                                           f"loop ({' -> '.join(ops)}) * {count}")
            case Delete(target=target):
                return self._delete(workflow, target)
            case Modify(target=target, operator=op):
                return self._modify(workflow, target, op)
            case SetPrompt(target=target, prompt=prompt):
                prompt = prompt.strip()
                if len(prompt) < min_prompt:
                    return Edit(None, f"the prompt is too short (at least {min_prompt} characters): "
                                + render_action(SetPrompt(target, "TEXT")))
                result = self._edit(workflow, lambda b: b.set_prompt(target, prompt[:max_prompt]))
                if isinstance(result, str):
                    return Edit(None, result)
                return Edit(result[0], f"Prompt of {target} updated;")
            case Finish():
                raise UserError("finish is handled by the canvas, not the editor")
        raise UserError(f"{action!r} is not a canvas action")

    # -- helpers ---------------------------------------------------------------------------------
    def _edit(self, workflow: Workflow, change: Callable[[WorkflowBuilder], T]) -> tuple[Workflow, T] | str:
        builder = WorkflowBuilder(workflow, registry=self.registry, kind=self.kind)
        try:
            value = change(builder)
        except UserError as exc:
            return str(exc)
        violations = builder.validate()
        if violations:
            return "; ".join(str(v) for v in violations)
        new = builder.workflow
        if len(new.ids()) > self.max_nodes:
            return (f"the canvas holds at most {self.max_nodes} nodes; delete something or finish "
                    "instead of adding")
        repeated = self._repeats(workflow, new)
        if repeated:
            return repeated
        early = ends_early(new, self.registry)
        if len(early) > len(ends_early(workflow, self.registry)):  # never refused for what was there
            node = new.find(early[-1])
            name = node.operator if isinstance(node, OperatorNode) else early[-1]
            return (f"{name} ends the workflow (it extracts the final answer), so nothing can run after "
                    f"it; finish if the answer is ready, or put the operator before it with "
                    f"<position>N</position>")
        return new, value

    def _repeats(self, old: Workflow, new: Workflow) -> str:
        """Why ``new`` stacks too many identical operators in a row ("" when it does not)."""
        refused = repeat_refusal(old, new, self.registry, self.max_repeats)
        if refused is None:
            return ""
        name, run, limit = refused
        if limit < self.max_repeats:  # the operator's own limit (OperatorSpec.max_in_row)
            spec = self.registry.lookup_case_insensitive(name)
            rule = (f"{name} may not follow another {name}" if limit == 1
                    else f"at most {limit} {name} operators may follow each other")
            last = spec is not None and spec.role is Role.FORMATTING
            return (f"this would make {run} {name} operators in a row; {rule}, another adds nothing: "
                    + ("finish if the answer is ready, or add a different operator" if last
                       else "add a different operator instead"))
        coders = [s.name for s in self.registry if s.runs_code and s.is_solver and s.name != name]
        checkers = [s.name for s in self.registry if s.is_checker and s.name != name]
        instead = ", or ".join(x for x in (
            f"a {' or '.join(coders[:2])} to compute" if coders else "",
            f"a checker ({', '.join(checkers[:3])}) to check the result" if checkers else "",
        ) if x) or "a different operator"
        return (f"this would make {run} {name} operators in a row; at most {self.max_repeats} identical "
                f"operators may follow each other. Another {name} adds nothing new: add {instead} instead")

    def _requests(self, workflow: Workflow, node_ids: list[str]) -> tuple[PromptRequest, ...]:
        out = []
        for i, node_id in enumerate(node_ids, 1):
            node = workflow.find(node_id)
            operator = node.operator if isinstance(node, OperatorNode) else ""
            out.append(PromptRequest(node_id, operator, i, len(node_ids), node_context(workflow, node_id)))
        return tuple(out)

    def _add_operator(self, workflow: Workflow, action: AddOperator, min_prompt: int, max_prompt: int) -> Edit:
        top = len(workflow.steps)
        pos = action.position
        if pos is not None and not 1 <= pos <= top + 1:
            return Edit(None, f"position {pos} is out of range; use 1..{top + 1} (1 puts the operator "
                        "first, omit <position> to append)")
        inline = (action.prompt or "").strip()[:max_prompt]
        if len(inline) < min_prompt:
            inline = ""
        result = self._edit(workflow, lambda b: b.add(
            action.operator, prompt=inline, position=None if pos is None else pos - 1))
        if isinstance(result, str):
            return Edit(None, result)
        new, node_id = result
        where = f" at position {pos}" if pos is not None else ""
        if inline:
            return Edit(new, f"Added {action.operator} as {node_id}{where} with its prompt;")
        note = " (the inline prompt was too short)" if action.prompt else ""
        return Edit(new, f"Added {action.operator} as {node_id}{where}{note}.", self._requests(new, [node_id]))

    def _add_structure(self, workflow: Workflow, change: Callable[[WorkflowBuilder], str], what: str) -> Edit:
        result = self._edit(workflow, change)
        if isinstance(result, str):
            return Edit(None, result)
        new, structure_id = result
        step = new.find(structure_id)
        assert step is not None
        children = [ref.node.id for ref in iter_steps((step,)) if isinstance(ref.node, OperatorNode)]
        return Edit(new, f"Added {what} as {structure_id}; each of its {len(children)} operators needs "
                    "a prompt.", self._requests(new, children))

    def _delete(self, workflow: Workflow, target: str) -> Edit:
        result = self._edit(workflow, lambda b: b.delete(target))
        if isinstance(result, str):
            parent = workflow.parent_of(target) if workflow.find(target) is not None else None
            if parent is not None and f"delete {parent.id}" not in result:
                result += f". To remove the whole structure, delete {parent.id}"
            return Edit(None, result)
        return Edit(result[0], f"Deleted {target};")

    def _modify(self, workflow: Workflow, target: str, operator: str) -> Edit:
        node = workflow.find(target)
        old = node.operator if isinstance(node, OperatorNode) else ""
        result = self._edit(workflow, lambda b: b.modify(target, operator))
        if isinstance(result, str):
            return Edit(None, result)
        new = result[0]
        return Edit(new, f"Changed {target} from {old} to {operator}.",
                    self._requests(new, [target]))
