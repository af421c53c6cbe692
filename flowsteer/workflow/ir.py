"""Workflow intermediate representation: immutable values.

A workflow is a *chain* (a tuple of steps). A step is one of:

* :class:`OperatorNode` -- one operator call (name, the director's prompt, params);
* :class:`Parallel` -- two or more branches, each a chain, all given the same input; the step's
  output is the list of branch outputs, which an ensembler (ScEnsemble, Aggregate) reduces;
* :class:`Conditional` -- a checker node; ``on_fail`` runs when the check FAILS, ``on_pass``
  (possibly empty: ``done``) when it passes;
* :class:`Loop` -- a body chain run up to ``max_iterations`` times (1..10), leaving early as soon as
  the body's last checker passes.

Ids are assigned by :class:`~flowsteer.workflow.builder.WorkflowBuilder` from the workflow's monotonic
counter (``next_id``), so they never collide after a delete. Nodes created outside a builder (for
instance by the DSL parser before placement) have ``id == ""``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = [
    "OperatorNode",
    "Parallel",
    "Conditional",
    "Loop",
    "Step",
    "Chain",
    "Workflow",
    "NodeRef",
    "MIN_LOOP_ITERATIONS",
    "MAX_LOOP_ITERATIONS",
    "render",
    "DONE",
]

MIN_LOOP_ITERATIONS = 1
MAX_LOOP_ITERATIONS = 10


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class OperatorNode:
    """One operator call."""

    operator: str
    """Registered operator name, e.g. ``"Programmer"``."""
    prompt: str = ""
    """The director's guidance for this node ("" until set)."""
    id: str = ""
    """Stable node id, e.g. ``"node_3"``."""
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Operator-specific parameters (e.g. ``{"attempts": 2}``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen_mapping(self.params))

    def __hash__(self) -> int:
        # The generated hash would hash the (unhashable) params mapping; equal nodes have equal
        # operator/prompt/id, so leaving params out keeps hash consistent with ==.
        return hash((self.operator, self.prompt, self.id))


@dataclass(frozen=True)
class Parallel:
    """Fan-out: every branch receives the same input; the output is the tuple of branch outputs."""

    branches: tuple[Chain, ...]
    id: str = ""


@dataclass(frozen=True)
class Conditional:
    """Run ``check``; on failure run ``on_fail``, on success ``on_pass`` (empty chain = ``done``)."""

    check: OperatorNode
    on_fail: Chain
    on_pass: Chain = ()
    id: str = ""


@dataclass(frozen=True)
class Loop:
    """Run ``body`` up to ``max_iterations`` times; stop early when the body's last checker passes."""

    body: Chain
    max_iterations: int = 3
    id: str = ""


Step: TypeAlias = OperatorNode | Parallel | Conditional | Loop
Chain: TypeAlias = tuple[Step, ...]


@dataclass(frozen=True)
class NodeRef:
    """Where a node lives: the node, its parent structure (None at top level) and its chain path."""

    node: Step
    parent: Step | None
    depth: int


def iter_steps(chain: Chain, parent: Step | None = None, depth: int = 0) -> Iterator[NodeRef]:
    """Depth-first, execution-order walk over every step (structures and their children)."""
    for step in chain:
        yield NodeRef(step, parent, depth)
        match step:
            case OperatorNode():
                pass
            case Parallel(branches=branches):
                for branch in branches:
                    yield from iter_steps(branch, step, depth + 1)
            case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
                yield NodeRef(check, step, depth + 1)
                yield from iter_steps(on_fail, step, depth + 1)
                yield from iter_steps(on_pass, step, depth + 1)
            case Loop(body=body):
                yield from iter_steps(body, step, depth + 1)


@dataclass(frozen=True)
class Workflow:
    """An immutable workflow: a top-level chain plus the id counter.

    Build and edit workflows with :class:`~flowsteer.workflow.builder.WorkflowBuilder`; parse and render the
    text form with :mod:`flowsteer.workflow.dsl`.
    """

    steps: Chain = ()
    next_id: int = 1
    """The next id number the builder will hand out (monotonic, never reused)."""

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __str__(self) -> str:
        return self.dsl

    @property
    def is_empty(self) -> bool:
        return not self.steps

    def walk(self) -> Iterator[NodeRef]:
        """Every step and nested node in execution order."""
        return iter_steps(self.steps)

    def operator_nodes(self) -> list[OperatorNode]:
        """Every operator leaf (conditional checkers included), in execution order."""
        return [ref.node for ref in self.walk() if isinstance(ref.node, OperatorNode)]

    def find(self, node_id: str) -> Step | None:
        """The step or node with this id, or None."""
        for ref in self.walk():
            if ref.node.id == node_id:
                return ref.node
        return None

    def parent_of(self, node_id: str) -> Step | None:
        for ref in self.walk():
            if ref.node.id == node_id:
                return ref.parent
        return None

    def ids(self) -> list[str]:
        return [ref.node.id for ref in self.walk()]

    @property
    def dsl(self) -> str:
        """The canonical text form (see :func:`render`)."""
        return render(self)


# -- the text form -----------------------------------------------------------------------------
# Rendering lives with the IR it prints (the IR needs it for ``Workflow.dsl``); parsing, which needs
# the registry and the builder, lives in :mod:`flowsteer.workflow.dsl`, which re-exports ``render``.
DONE = "done"
"""The empty ``on_pass`` branch of a conditional in the text form."""


def render(workflow: Workflow | Chain | Step) -> str:
    """The canonical text of a workflow, a chain or a single step (``""`` when empty).

    ``render(parse(s)) == s`` for canonical ``s``, and ``parse(render(w))`` has ``w``'s structure
    (prompts and params are not part of the text form).
    """
    match workflow:
        case Workflow(steps=steps):
            return _render_chain(steps)
        case OperatorNode() | Parallel() | Conditional() | Loop():
            return _render_step(workflow)
        case tuple() | list():
            return _render_chain(tuple(workflow))
    raise TypeError(f"render() takes a Workflow, a chain or a step, not {type(workflow).__name__}")


def _render_chain(chain: Chain) -> str:
    return " -> ".join(_render_step(step) for step in chain)


def _render_step(step: Step) -> str:
    match step:
        case OperatorNode(operator=name):
            return name
        case Parallel(branches=branches):
            return "[" + ", ".join(_render_chain(b) for b in branches) + "]"
        case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
            passed = _render_branch(on_pass) if on_pass else DONE
            return f"{check.operator} ? {_render_branch(on_fail)} : {passed}"
        case Loop(body=body, max_iterations=count):
            return f"({_render_chain(body)}) * {count}"
    raise TypeError(f"{step!r} is not a workflow step")


def _render_branch(chain: Chain) -> str:
    """A conditional branch: bare when it is one non-conditional step, parenthesised otherwise."""
    if len(chain) == 1 and not isinstance(chain[0], Conditional):
        return _render_step(chain[0])
    return f"({_render_chain(chain)})"
