"""Graph views of a workflow: a networkx data-flow graph, a Mermaid chart and summary statistics.

Graph shape (:func:`to_networkx`):

* ``__start__`` and ``__end__`` nodes (``kind="start"`` / ``"end"``);
* one node per operator, keyed by its id (``kind="operator"``, ``operator``, ``prompt``, ``label``);
* structure nodes keyed by the structure's id: a parallel's **join** (every branch ends there), a
  conditional's **route** (after its check; ``branch="fail"`` / ``"pass"`` edges leave it) plus its
  join ``"<id>.join"``, and a loop's **route** at the end of the body, which either repeats (a back
  edge to the body's first node, flagged ``loop=True``) or leaves;
* edges follow data flow; every edge has a ``loop`` attribute (True only on back edges).

Ignoring back edges the graph is a DAG (:func:`topological_order`, :func:`has_cycle`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import networkx as nx

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Step, Workflow

if TYPE_CHECKING:
    from flowsteer.operators.registry import OperatorRegistry

__all__ = [
    "START",
    "END",
    "WorkflowStats",
    "stats",
    "to_networkx",
    "topological_order",
    "has_cycle",
    "to_mermaid",
]

START = "__start__"
END = "__end__"


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkflowStats:
    """Counts read from the IR (never from the DSL text)."""

    operator_count: int
    """Operator leaves, conditional checkers and duplicates included; loop bodies counted once."""
    unique_operators: int
    """Distinct operator names."""
    operators: tuple[str, ...]
    """Operator names in execution order (a conditional's check before its branches)."""
    has_parallel: bool
    has_conditional: bool
    has_loop: bool
    role_counts: Mapping[str, int]
    """``Role.value`` -> number of operator leaves with that role (every role present, maybe 0);
    operators the registry does not know are not counted."""
    max_depth: int
    """Structure nesting: 0 for a plain chain, 1 for structures holding only operators, ..."""

    @property
    def has_structure(self) -> bool:
        """True when the workflow has a parallel, a conditional or a loop."""
        return self.has_parallel or self.has_conditional or self.has_loop


def stats(workflow: Workflow | Chain, registry: OperatorRegistry | None = None) -> WorkflowStats:
    """Summary statistics of a workflow (``registry`` defaults to the default registry)."""
    if registry is None:
        from flowsteer.operators.registry import default_registry

        registry = default_registry()
    wf = workflow if isinstance(workflow, Workflow) else Workflow(tuple(workflow))
    refs = list(wf.walk())
    names = tuple(ref.node.operator for ref in refs if isinstance(ref.node, OperatorNode))
    roles = {role.value: 0 for role in Role}
    for name in names:
        spec = registry.lookup_case_insensitive(name)
        if spec is not None:
            roles[spec.role.value] += 1
    kinds = {type(ref.node) for ref in refs}
    return WorkflowStats(
        operator_count=len(names),
        unique_operators=len(set(names)),
        operators=names,
        has_parallel=Parallel in kinds,
        has_conditional=Conditional in kinds,
        has_loop=Loop in kinds,
        role_counts=MappingProxyType(roles),
        max_depth=_depth(wf.steps),
    )


def _depth(chain: Chain) -> int:
    deepest = 0
    for step in chain:
        match step:
            case Parallel(branches=branches):
                deepest = max(deepest, 1 + max((_depth(b) for b in branches), default=0))
            case Conditional(on_fail=on_fail, on_pass=on_pass):
                deepest = max(deepest, 1 + max(_depth(on_fail), _depth(on_pass)))
            case Loop(body=body):
                deepest = max(deepest, 1 + _depth(body))
    return deepest


# -- networkx --------------------------------------------------------------------------------
def to_networkx(workflow: Workflow) -> nx.DiGraph:
    """The data-flow graph of a built workflow (see the module docstring for its shape)."""
    _require_ids(workflow)
    graph = nx.DiGraph(dsl=workflow.dsl)
    graph.add_node(START, kind="start", label="start")
    last = _add_chain(graph, workflow.steps, START)
    graph.add_node(END, kind="end", label="end")
    _edge(graph, last, END)
    return graph


def _require_ids(workflow: Workflow) -> None:
    ids = workflow.ids()
    if any(not i for i in ids) or len(set(ids)) != len(ids) or {START, END} & set(ids):
        raise UserError(
            "the workflow's node ids are missing or not unique; build it with WorkflowBuilder, "
            "flowsteer.workflow.dsl.parse or flowsteer.workflow.serialize.from_json so every node has its own id"
        )


def _edge(graph: nx.DiGraph, source: str, target: str, **attrs: Any) -> None:
    graph.add_edge(source, target, loop=False, **attrs)


def _add_chain(graph: nx.DiGraph, chain: Chain, previous: str, **attrs: Any) -> str:
    """Add ``chain`` after node ``previous``; return the node its output leaves from.

    ``attrs`` go on the edges leaving ``previous`` (a conditional's ``branch`` label).
    """
    for step in chain:
        previous = _add_step(graph, step, previous, attrs)
        attrs = {}
    return previous


def _add_step(graph: nx.DiGraph, step: Step, previous: str, attrs: dict[str, Any]) -> str:
    match step:
        case OperatorNode():
            _add_operator(graph, step)
            _edge(graph, previous, step.id, **attrs)
            return step.id
        case Parallel(branches=branches, id=sid):
            tails = [_add_chain(graph, branch, previous, **attrs) for branch in branches]
            graph.add_node(sid, kind="join", structure="parallel", label=f"{sid}: join")
            for index, tail in enumerate(tails):
                _edge(graph, tail, sid, **(attrs if tail == previous else {"index": index}))
            return sid
        case Conditional(check=check, on_fail=on_fail, on_pass=on_pass, id=sid):
            _add_operator(graph, check)
            _edge(graph, previous, check.id, **attrs)
            graph.add_node(sid, kind="route", structure="conditional", label=f"{sid}: {check.operator} passed?")
            _edge(graph, check.id, sid)
            join = f"{sid}.join"
            tails = [_add_chain(graph, on_fail, sid, branch="fail"), _add_chain(graph, on_pass, sid, branch="pass")]
            graph.add_node(join, kind="join", structure="conditional", label=f"{sid}: end if")
            for name, tail in zip(("fail", "pass"), tails, strict=True):
                _edge(graph, tail, join, **({"branch": name} if tail == sid else {}))
            return join
        case Loop(body=body, max_iterations=count, id=sid):
            tail = _add_chain(graph, body, previous, **attrs)
            graph.add_node(
                sid, kind="route", structure="loop", label=f"{sid}: repeat up to {count}", max_iterations=count
            )
            _edge(graph, tail, sid)
            for head in _heads(body):
                graph.add_edge(sid, head, loop=True, max_iterations=count)
            return sid
    raise UserError(f"{step!r} is not a workflow step")


def _heads(chain: Chain) -> list[str]:
    """The nodes that receive a chain's input (where a loop's back edges go)."""
    if not chain:
        return []
    match chain[0]:
        case OperatorNode(id=node_id):
            return [node_id]
        case Parallel(branches=branches, id=sid):
            return [head for branch in branches for head in (_heads(branch) or [sid])]
        case Conditional(check=check):
            return [check.id]
        case Loop(body=body, id=sid):
            return _heads(body) or [sid]
    return []


def _add_operator(graph: nx.DiGraph, node: OperatorNode) -> None:
    graph.add_node(
        node.id, kind="operator", operator=node.operator, prompt=node.prompt, label=f"{node.id}: {node.operator}"
    )


def _forward(graph: nx.DiGraph) -> nx.DiGraph:
    """The graph without loop back edges."""
    return graph.edge_subgraph([(u, v) for u, v, back in graph.edges(data="loop") if not back]).copy()


def topological_order(workflow: Workflow | nx.DiGraph, *, operators_only: bool = False) -> list[str]:
    """Node names in a data-flow order that ignores loop back edges (ties in insertion order)."""
    graph = workflow if isinstance(workflow, nx.DiGraph) else to_networkx(workflow)
    rank = {name: i for i, name in enumerate(graph.nodes)}
    forward = _forward(graph)
    forward.add_nodes_from(graph.nodes(data=True))
    order = list(nx.lexicographical_topological_sort(forward, key=rank.__getitem__))
    if operators_only:
        return [n for n in order if graph.nodes[n].get("kind") == "operator"]
    return order


def has_cycle(workflow: Workflow | nx.DiGraph, *, ignore_back_edges: bool = True) -> bool:
    """True when the graph has a cycle (by default after removing loop back edges: never, if the
    workflow was built by the builder)."""
    graph = workflow if isinstance(workflow, nx.DiGraph) else to_networkx(workflow)
    checked = _forward(graph) if ignore_back_edges else graph
    return not nx.is_directed_acyclic_graph(checked)


# -- mermaid ---------------------------------------------------------------------------------
_SHAPES = {
    "start": ("([", "])"),
    "end": ("([", "])"),
    "operator": ('["', '"]'),
    "join": ('(("', '"))'),
    "route": ('{"', '"}'),
}


def to_mermaid(workflow: Workflow) -> str:
    """A ``flowchart TD`` Mermaid chart of :func:`to_networkx`'s graph (deterministic text)."""
    graph = to_networkx(workflow)
    lines = ["flowchart TD"]
    for name, data in graph.nodes(data=True):
        opening, closing = _SHAPES[data["kind"]]
        lines.append(f"    {_mermaid_id(name)}{opening}{_escape(data['label'])}{closing}")
    for source, target, data in graph.edges(data=True):
        arrow = "-.->" if data["loop"] else "-->"
        text = "repeat" if data["loop"] else data.get("branch", "")
        label = f"|{text}|" if text else ""
        lines.append(f"    {_mermaid_id(source)} {arrow}{label} {_mermaid_id(target)}")
    return "\n".join(lines) + "\n"


def _mermaid_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _escape(label: str) -> str:
    return label.replace('"', "#quot;")
