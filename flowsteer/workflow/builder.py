"""WorkflowBuilder: edit a workflow, validate, then ``build()`` a frozen :class:`Workflow`.

Ids come from the workflow's monotonic counter and are never reused, so deleting ``node_2`` and
adding a node gives ``node_N`` with a fresh ``N`` (the reference implementation's ``len+1`` ids
collided after a delete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from flowsteer.errors import UserError, WorkflowValidationError
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Step, Workflow
from flowsteer.workflow.validation import Violation, validate

__all__ = ["WorkflowBuilder", "StepLike", "ChainLike"]

StepLike = str | Step
"""An operator name or a step (ids may be blank: the builder assigns them)."""
ChainLike = StepLike | Sequence[StepLike]
"""One step or a sequence of steps."""


class WorkflowBuilder:
    """Mutable editor over an immutable :class:`Workflow`.

    Every ``add*`` returns the id of the new step. Edits that name a missing node raise
    :class:`UserError`; structural problems are reported together by :meth:`validate` and make
    :meth:`build` raise :class:`WorkflowValidationError`.
    """

    def __init__(self, workflow: Workflow | None = None, *, registry: OperatorRegistry | None = None,
                 kind: str | None = None) -> None:
        self._registry = registry
        self._workflow = workflow or Workflow()
        self.kind = kind
        """The task kind :meth:`validate` checks operators against (None: any kind)."""

    @property
    def registry(self) -> OperatorRegistry:
        """The registry used by :meth:`validate` (the default registry, looked up lazily, if none)."""
        # Lazy so that editing (and dsl.parse without a registry) never needs the built-ins.
        if self._registry is None:
            self._registry = default_registry()
        return self._registry

    @registry.setter
    def registry(self, value: OperatorRegistry) -> None:
        self._registry = value

    # -- reading ---------------------------------------------------------------------------
    @property
    def workflow(self) -> Workflow:
        """The current (not necessarily valid) workflow."""
        return self._workflow

    def validate(self) -> list[Violation]:
        return validate(self._workflow, self.registry, kind=self.kind)

    def build(self) -> Workflow:
        violations = self.validate()
        if violations:
            raise WorkflowValidationError(violations)
        return self._workflow

    # -- adding ----------------------------------------------------------------------------
    def add(self, step: StepLike, *, prompt: str = "", position: int | None = None) -> str:
        """Append (or insert at ``position``, 0-based) an operator or a prepared step."""
        if isinstance(step, str):
            step = OperatorNode(step, prompt=prompt)
        elif prompt and isinstance(step, OperatorNode):
            step = replace(step, prompt=prompt)
        placed = self._assign_ids(step)
        steps = list(self._workflow.steps)
        if position is None:
            steps.append(placed)
        else:
            if not 0 <= position <= len(steps):
                raise UserError(f"position {position} is out of range; use 0..{len(steps)}")
            steps.insert(position, placed)
        self._workflow = replace(self._workflow, steps=tuple(steps))
        return placed.id

    def insert(self, position: int, step: StepLike, *, prompt: str = "") -> str:
        return self.add(step, prompt=prompt, position=position)

    def add_parallel(self, branches: Sequence[ChainLike], *, position: int | None = None) -> str:
        return self.add(Parallel(tuple(_as_chain(b) for b in branches)), position=position)

    def add_conditional(
        self,
        check: str | OperatorNode,
        on_fail: ChainLike,
        on_pass: ChainLike | None = None,
        *,
        position: int | None = None,
    ) -> str:
        check_node = OperatorNode(check) if isinstance(check, str) else check
        cond = Conditional(check_node, _as_chain(on_fail), _as_chain(on_pass) if on_pass else ())
        return self.add(cond, position=position)

    def add_loop(self, body: ChainLike, max_iterations: int = 3, *, position: int | None = None) -> str:
        return self.add(Loop(_as_chain(body), max_iterations), position=position)

    # -- editing ---------------------------------------------------------------------------
    def delete(self, node_id: str) -> None:
        """Remove a step (top-level or nested). A conditional's checker goes with its conditional."""
        self._require(node_id)
        parent = self._workflow.parent_of(node_id)
        if isinstance(parent, Conditional) and parent.check.id == node_id:
            raise UserError(
                f"{node_id} is the check of conditional {parent.id}; delete {parent.id} instead "
                f"or modify {node_id} to another checker"
            )
        self._workflow = replace(self._workflow, steps=_remove(self._workflow.steps, node_id))

    def modify(self, node_id: str, operator: str, *, prompt: str = "") -> None:
        """Change an operator node's operator (the prompt is reset unless given)."""
        node = self._require(node_id)
        if not isinstance(node, OperatorNode):
            raise UserError(f"{node_id} is a {type(node).__name__}; only operator nodes can be modified")
        self._update(node_id, lambda n: replace(n, operator=operator, prompt=prompt))

    def set_prompt(self, node_id: str, prompt: str) -> None:
        node = self._require(node_id)
        if not isinstance(node, OperatorNode):
            raise UserError(f"{node_id} is a {type(node).__name__}; prompts belong to operator nodes")
        self._update(node_id, lambda n: replace(n, prompt=prompt))

    def set_params(self, node_id: str, **params: object) -> None:
        node = self._require(node_id)
        if not isinstance(node, OperatorNode):
            raise UserError(f"{node_id} is a {type(node).__name__}; params belong to operator nodes")
        self._update(node_id, lambda n: replace(n, params={**n.params, **params}))

    # -- internals -------------------------------------------------------------------------
    def _require(self, node_id: str) -> Step:
        node = self._workflow.find(node_id)
        if node is None:
            known = ", ".join(i for i in self._workflow.ids() if i) or "none yet"
            raise UserError(f"node {node_id!r} not found; existing ids: {known}")
        return node

    def _update(self, node_id: str, fn: Callable[[OperatorNode], OperatorNode]) -> None:
        self._workflow = replace(self._workflow, steps=_map_nodes(self._workflow.steps, node_id, fn))

    def _next(self) -> str:
        n = self._workflow.next_id
        self._workflow = replace(self._workflow, next_id=n + 1)
        return f"node_{n}"

    def _canonical(self, name: str) -> str:
        """Operator names are case-insensitive everywhere (parser, builder, canvas): the registered
        spelling is what the workflow stores."""
        spec = self.registry.lookup_case_insensitive(name)
        return spec.name if spec is not None else name

    def _assign_ids(self, step: Step) -> Step:
        """Give a fresh id to every node of ``step`` (pre-order, so a parent's id is smaller)."""
        match step:
            case OperatorNode():
                return replace(step, id=self._next(), operator=self._canonical(step.operator))
            case Parallel(branches=branches):
                sid = self._next()
                return Parallel(tuple(self._assign_chain(b) for b in branches), id=sid)
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                sid = self._next()
                return Conditional(
                    replace(check, id=self._next(), operator=self._canonical(check.operator)),
                    self._assign_chain(on_fail),
                    self._assign_chain(on_pass),
                    id=sid,
                )
            case Loop(body=body, max_iterations=count):
                sid = self._next()
                return Loop(self._assign_chain(body), count, id=sid)
        raise UserError(f"{step!r} is not a workflow step")

    def _assign_chain(self, chain: Chain) -> Chain:
        return tuple(self._assign_ids(s) for s in chain)


def _as_chain(value: ChainLike) -> Chain:
    if isinstance(value, str):
        return (OperatorNode(value),)
    if isinstance(value, OperatorNode | Parallel | Conditional | Loop):
        return (value,)
    return tuple(OperatorNode(v) if isinstance(v, str) else v for v in value)


def _remove(chain: Chain, node_id: str) -> Chain:
    out: list[Step] = []
    for step in chain:
        if step.id == node_id:
            continue
        pruned = _descend(step, lambda c: _remove(c, node_id))
        if isinstance(step, Parallel) and isinstance(pruned, Parallel):
            # a branch whose only node was deleted disappears (an empty branch means nothing);
            # a block left with one branch is reported by validation
            kept = tuple(new for old, new in zip(step.branches, pruned.branches, strict=True) if new or not old)
            pruned = replace(pruned, branches=kept)
        out.append(pruned)
    return tuple(out)


def _map_nodes(chain: Chain, node_id: str, fn: Callable[[OperatorNode], OperatorNode]) -> Chain:
    def one(step: Step) -> Step:
        if isinstance(step, OperatorNode):
            return fn(step) if step.id == node_id else step
        if isinstance(step, Conditional) and step.check.id == node_id:
            step = replace(step, check=fn(step.check))
        return _descend(step, lambda c: _map_nodes(c, node_id, fn))

    return tuple(one(s) for s in chain)


def _descend(step: Step, fn: Callable[[Chain], Chain]) -> Step:
    """Apply ``fn`` to every sub-chain of a structure."""
    match step:
        case Parallel(branches=branches):
            return replace(step, branches=tuple(fn(b) for b in branches))
        case Conditional(on_fail=on_fail, on_pass=on_pass):
            return replace(step, on_fail=fn(on_fail), on_pass=fn(on_pass))
        case Loop(body=body):
            return replace(step, body=fn(body))
    return step
