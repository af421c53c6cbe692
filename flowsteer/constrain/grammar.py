"""The director's action language as data: a small acyclic graph of literal pieces and free text.

:func:`action_grammar` builds, for one canvas state, the set of outputs that are exactly one action
the canvas would accept now, in the canonical XML of :func:`flowsteer.canvas.actions.render_action`:
operator names come from the registry (custom operators included) and respect roles (a conditional's
condition is a checker, an ensembler never sits inside a parallel block), ``delete``/``modify``/
``set_prompt`` name existing nodes and only edits the workflow validator accepts, loop counts are
1..10, parallel blocks have at least two branches, and nothing overflows ``max_nodes``.

The graph knows nothing about tokenizers. Every edge is a literal *piece* whose ends sit at a
letter/digit-punctuation boundary (``<action>add</action><operator>`` | ``Programmer`` |
``</operator>``), which is also where byte-level BPE pre-tokenisers split, so tokenising each piece
on its own yields the tokenizer's canonical tokens for the whole action (see
:func:`flowsteer.constrain.trie.check_canonical`). A state may carry a :class:`FreeText` loop (the
optional ``<think>`` part, a ``set_prompt`` text, a prompt turn): any text without the forbidden
characters, up to a token budget, then one of the state's edges.

Design choice on ``finish``: with ``finish="when_allowed"`` and a canvas, it is offered only when the
canvas's finish constraints hold (an untrained director cannot waste turns on refused finishes);
with ``"always"`` it is always offered and the canvas refuses it with the reason.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowsteer.canvas.actions import (
    LIST_SEPARATOR,
    MAX_LIST_OPERATORS,
    AddConditional,
    AddLoop,
    AddOperator,
    AddParallel,
    Delete,
    Finish,
    Modify,
    SetPrompt,
    syntax_of,
)
from flowsteer.errors import UserError
from flowsteer.operators.registry import OperatorRegistry, OperatorSpec, default_registry
from flowsteer.workflow.ir import MAX_LOOP_ITERATIONS, MIN_LOOP_ITERATIONS, OperatorNode, Workflow

__all__ = [
    "FreeText",
    "Edge",
    "GrammarState",
    "ActionGrammar",
    "GrammarOptions",
    "action_grammar",
    "prompt_grammar",
]


@dataclass(frozen=True)
class FreeText:
    """Free text allowed in a state before it takes one of its edges."""

    max_tokens: int
    """Most free tokens; then only the state's edges (or the end) remain."""
    min_tokens: int = 0
    """Fewest free tokens before an edge or the end is allowed."""
    forbid: str = "<"
    """Characters no free token may contain (``<`` keeps tags from leaking into the text)."""


@dataclass(frozen=True)
class Edge:
    """A literal piece of text leading to state ``to``."""

    text: str
    to: int


@dataclass(frozen=True)
class GrammarState:
    """One state: its outgoing pieces, an optional free-text loop, and whether the output may end."""

    edges: tuple[Edge, ...] = ()
    accept: bool = False
    free: FreeText | None = None


@dataclass(frozen=True)
class ActionGrammar:
    """An acyclic graph of :class:`GrammarState` (state 0 is the start)."""

    states: tuple[GrammarState, ...]
    start: int = 0

    def matches(self, text: str) -> bool:
        """Whether ``text`` is a complete output of this grammar (free-text budgets not counted)."""
        return self._match(self.start, text, 0)

    def _match(self, state: int, text: str, at: int) -> bool:
        node = self.states[state]
        if node.free is not None:
            stop = at
            while stop < len(text) and text[stop] not in node.free.forbid:
                stop += 1
            # free text ends somewhere in [at, stop]; try every split (texts are short)
            return any(self._edges_or_end(node, text, k) for k in range(stop, at - 1, -1))
        return self._edges_or_end(node, text, at)

    def _edges_or_end(self, node: GrammarState, text: str, at: int) -> bool:
        if node.accept and at == len(text):
            return True
        return any(text.startswith(e.text, at) and self._match(e.to, text, at + len(e.text)) for e in node.edges)

    def sample(self, rng: random.Random, free_text: str = "step by step") -> str:
        """A random complete output (free text filled with ``free_text``); for tests and docs."""
        out: list[str] = []
        state = self.start
        while True:
            node = self.states[state]
            if node.free is not None and (node.free.min_tokens > 0 or rng.random() < 0.5):
                out.append(free_text)
            if not node.edges or (node.accept and rng.random() < 0.3):
                return "".join(out)
            edge = rng.choice(node.edges)
            out.append(edge.text)
            state = edge.to

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able): stored with a constrained turn so the trainer can replay it."""
        return {"start": self.start, "states": [
            {"edges": [[e.text, e.to] for e in s.edges], "accept": s.accept,
             "free": None if s.free is None else [s.free.max_tokens, s.free.min_tokens, s.free.forbid]}
            for s in self.states]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionGrammar:
        """Inverse of :meth:`to_dict`."""
        states = tuple(
            GrammarState(tuple(Edge(t, int(to)) for t, to in s["edges"]), bool(s["accept"]),
                         None if s["free"] is None else FreeText(int(s["free"][0]), int(s["free"][1]),
                                                                 str(s["free"][2])))
            for s in data["states"])
        return cls(states, int(data.get("start", 0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ActionGrammar:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class GrammarOptions:
    """What the action grammar offers (defaults: every action the canvas takes, no inline prompts)."""

    think_tokens: int = 0
    """Budget of an optional ``<think>...</think>`` part before the action (0: no think part)."""
    max_list: int = 4
    """Most operators in a parallel block or loop body."""
    positions: bool = True
    """Offer ``<position>N</position>`` on add."""
    set_prompt: bool = True
    """Offer ``set_prompt`` (its text is free, without ``<``)."""
    prompt_tokens: int = 96
    """Budget of a ``set_prompt`` text or a prompt turn."""
    min_prompt_tokens: int = 2
    finish: Literal["always", "when_allowed", "never"] = "always"
    """When ``finish`` is offered (``when_allowed`` needs the canvas; see the module docstring)."""
    max_nodes: int | None = None
    """Node limit of the canvas (None: no limit)."""
    node_actions: bool = True
    """Offer delete/modify/set_prompt (off when the node ids are not known for sure)."""
    max_repeats: int | None = 3
    """Do not offer appending an operator that would make more than this many identical operators
    in a row at the end of the workflow, or more than the operator's own ``max_in_row`` (the canvas
    refuses both: ``CanvasConfig.max_repeats``, ``OperatorSpec.max_in_row``); None: no repeat rule."""

    def __post_init__(self) -> None:
        if self.think_tokens < 0 or self.prompt_tokens < 1 or not 2 <= self.max_list <= MAX_LIST_OPERATORS:
            raise UserError("GrammarOptions: think_tokens >= 0, prompt_tokens >= 1 and "
                            f"2 <= max_list <= {MAX_LIST_OPERATORS} (the parser's list limit)")
        if self.finish not in ("always", "when_allowed", "never"):
            raise UserError(f"GrammarOptions.finish must be 'always', 'when_allowed' or 'never', not {self.finish!r}")


@dataclass
class _Graph:
    states: list[GrammarState] = field(default_factory=list)
    edges: list[list[Edge]] = field(default_factory=list)

    def new(self, *, accept: bool = False, free: FreeText | None = None) -> int:
        self.states.append(GrammarState(accept=accept, free=free))
        self.edges.append([])
        return len(self.states) - 1

    def edge(self, frm: int, text: str, to: int) -> None:
        self.edges[frm].append(Edge(text, to))

    def freeze(self, start: int) -> ActionGrammar:
        return ActionGrammar(tuple(GrammarState(tuple(e), s.accept, s.free)
                                   for s, e in zip(self.states, self.edges, strict=True)), start)


# the tag layout of every action comes from the one table of the action language
_ADD, _PARALLEL, _CONDITIONAL, _LOOP = (syntax_of(c) for c in (AddOperator, AddParallel, AddConditional, AddLoop))
_DELETE, _MODIFY, _SET_PROMPT, _FINISH = (syntax_of(c) for c in (Delete, Modify, SetPrompt, Finish))


def action_grammar(
    registry: OperatorRegistry | None = None,
    workflow: Workflow | None = None,
    options: GrammarOptions | None = None,
    *,
    finish_allowed: bool | None = None,
    kind: str | None = None,
) -> ActionGrammar:
    """The grammar of one valid BUILDING-turn output for ``workflow`` (None: the empty canvas).

    ``finish_allowed`` is the canvas's verdict on finishing now; it matters only with
    ``options.finish == "when_allowed"`` (None there means "unknown" and offers finish). With the
    task ``kind``, operators that have nothing to do on it (``OperatorSpec.task_kinds``) are not
    offered, as the canvas would refuse them.
    """
    registry = registry or default_registry()
    options = options or GrammarOptions()
    workflow = workflow or Workflow()
    specs = [s for s in registry if s.applies_to(kind)]
    if not specs:
        raise UserError("the operator registry is empty; register operators before building the grammar")
    g = _Graph()
    final = g.new(accept=True)
    start = g.new()
    heads = [start]
    if options.think_tokens > 0:
        after_think = g.new()
        thinking = g.new(free=FreeText(options.think_tokens, 0, "<"))
        g.edge(start, "<think>", thinking)
        g.edge(thinking, "</think>\n", after_think)
        heads.append(after_think)
    room = None if options.max_nodes is None else options.max_nodes - len(workflow.ids())
    offer_finish = options.finish == "always" or (options.finish == "when_allowed" and finish_allowed is not False)
    targets = _Targets.of(registry, workflow, kind) if options.node_actions else _Targets([], {}, [])
    # a workflow that ends with Format (OperatorSpec.ends_workflow) takes no append, as on the canvas;
    # inserts before it stay, and appends are offered after all when nothing else would be
    from flowsteer.canvas import ends_workflow

    appends = (ends_workflow(workflow, registry) is None
               or not (offer_finish or options.node_actions or options.positions))
    for head in heads:
        _adds(g, head, final, registry, specs, workflow, options, room, appends=appends)
        _edits(g, head, final, targets, options)
        if offer_finish:
            g.edge(head, _FINISH.head(), final)
    return g.freeze(start)


def prompt_grammar(max_tokens: int = 256, *, min_tokens: int = 2, forbid: str = "<") -> ActionGrammar:
    """A prompt-writing (AWAITING_PROMPT) turn: free text without ``forbid``, at most ``max_tokens``."""
    return ActionGrammar((GrammarState((), True, FreeText(max_tokens, min_tokens, forbid)),))


def _name_list(g: _Graph, frm: int, names: Sequence[str], *, least: int, most: int,
               closes: Iterable[tuple[str, int]]) -> None:
    """``A, B, ...`` of ``least..most`` names from ``names``; then each ``(close_text, to)``."""
    closes = list(closes)
    current = frm
    for k in range(1, most + 1):
        item = g.new()
        for name in names:
            g.edge(current, name if k == 1 else LIST_SEPARATOR + name, item)
        if k >= least:
            for text, to in closes:
                g.edge(item, text, to)
        current = item


def _adds(g: _Graph, head: int, final: int, registry: OperatorRegistry, specs: list[OperatorSpec],
          workflow: Workflow, options: GrammarOptions, room: int | None, *, appends: bool = True) -> None:
    """The add actions; with ``appends=False`` only inserts before the last step (no structures)."""
    def fits(nodes: int) -> bool:
        return room is None or nodes <= room

    names = [s.name for s in specs]
    top = len(workflow.steps)
    inserts = options.positions and top > 0
    if fits(1) and (appends or inserts):
        op = g.new()
        g.edge(head, _ADD.opening(), op)
        after = g.new()
        last = g.new()  # an operator that ends the workflow goes last: appended, never inserted
        positions = list(range(1, top + (2 if appends else 1))) if inserts else []
        # slot top + 1 is the append: one repeat check for every placement, as the canvas makes
        refused = _placements_refused(registry, workflow, options.max_repeats)
        for spec in specs:
            no = refused.get(spec.name, set())
            can_append = appends and top + 1 not in no
            if spec.ends_workflow:  # appended only
                if can_append:
                    g.edge(op, spec.name, last)
                continue
            allowed = [p for p in positions if p not in no]
            if can_append == appends and len(allowed) == len(positions):
                g.edge(op, spec.name, after)
            elif can_append or allowed:  # some placements would be refused: this operator's own ending
                own = g.new()
                g.edge(op, spec.name, own)
                if can_append:
                    g.edge(own, _ADD.closing(0), final)
                if allowed:
                    at, close = g.new(), g.new()
                    g.edge(own, _ADD.between(0), at)
                    for p in allowed:
                        g.edge(at, str(p), close)
                    g.edge(close, _ADD.closing(1), final)
        if appends:
            g.edge(after, _ADD.closing(0), final)
            g.edge(last, _ADD.closing(0), final)
        if inserts:
            pos = g.new()
            g.edge(after, _ADD.between(0), pos)
            close = g.new()
            for p in positions:
                g.edge(pos, str(p), close)
            g.edge(close, _ADD.closing(1), final)
    if not appends:
        return
    members = [s.name for s in specs if not s.is_ensembler]
    most_par = min(options.max_list, (room - 1) if room is not None else options.max_list)
    if len(members) >= 1 and most_par >= 2:
        lst = g.new()
        g.edge(head, _PARALLEL.opening(), lst)
        _name_list(g, lst, members, least=2, most=most_par, closes=[(_PARALLEL.closing(0), final)])
    checkers = [s.name for s in specs if s.is_checker]
    if checkers and fits(3):
        _conditional(g, head, final, checkers, names, with_pass=fits(4))
    most_loop = min(options.max_list, (room - 1) if room is not None else options.max_list)
    if most_loop >= 1:
        lst = g.new()
        g.edge(head, _LOOP.opening(), lst)
        count = g.new()
        _name_list(g, lst, names, least=1, most=most_loop, closes=[(_LOOP.between(0), count)])
        close = g.new()
        for n in range(MIN_LOOP_ITERATIONS, MAX_LOOP_ITERATIONS + 1):
            g.edge(count, str(n), close)
        g.edge(close, _LOOP.closing(1), final)


def _placements_refused(registry: OperatorRegistry, workflow: Workflow,
                        max_repeats: int | None) -> dict[str, set[int]]:
    """Operator -> the slots ``1 .. len(steps) + 1`` (``<position>`` values; the last is the append)
    where the canvas would refuse to add it (its repeat rule): only an operator equal to a top-level
    neighbour of the slot can lengthen a run."""
    from flowsteer.canvas import repeat_refusal

    if max_repeats is None:
        return {}
    steps = workflow.steps
    refused: dict[str, set[int]] = {}
    for p in range(1, len(steps) + 2):
        neighbours = {s.operator for s in steps[max(0, p - 2):p] if isinstance(s, OperatorNode)}
        for name in neighbours:
            placed = Workflow(steps[:p - 1] + (OperatorNode(name),) + steps[p - 1:])
            if repeat_refusal(workflow, placed, registry, max_repeats) is not None:
                refused.setdefault(name, set()).add(p)
    return refused


def _conditional(g: _Graph, head: int, final: int, checkers: list[str], names: list[str],
                 *, with_pass: bool) -> None:
    cond = g.new()
    g.edge(head, _CONDITIONAL.opening(), cond)
    after_cond = g.new()
    for name in checkers:
        g.edge(cond, name, after_cond)
    on_fail = g.new()
    g.edge(after_cond, _CONDITIONAL.between(0), on_fail)
    after_fail = g.new()
    for name in names:
        g.edge(on_fail, name, after_fail)
    on_pass = g.new()
    g.edge(after_fail, _CONDITIONAL.between(1), on_pass)
    after_pass = g.new()
    for name in (names if with_pass else []) + ["done"]:
        g.edge(on_pass, name, after_pass)
    g.edge(after_pass, _CONDITIONAL.closing(2), final)


@dataclass(frozen=True)
class _Targets:
    """Node ids each node-targeted action may name now."""

    deletable: list[str]
    modifiable: dict[str, list[str]]
    """Operator node id -> operators it may become."""
    prompted: list[str]

    @classmethod
    def of(cls, registry: OperatorRegistry, workflow: Workflow, kind: str | None = None) -> _Targets:
        deletable = [i for i in workflow.ids() if _feasible(workflow, registry, kind, "delete", i)]
        operator_ids = [ref.node.id for ref in workflow.walk() if isinstance(ref.node, OperatorNode)]
        modifiable = {i: [s.name for s in registry if _feasible(workflow, registry, kind, "modify", i, s.name)]
                      for i in operator_ids}
        return cls(deletable, {i: ops for i, ops in modifiable.items() if ops}, operator_ids)


def _edits(g: _Graph, head: int, final: int, targets: _Targets, options: GrammarOptions) -> None:
    if targets.deletable:
        target = g.new()
        g.edge(head, _DELETE.opening(), target)
        close = g.new()
        for node_id in targets.deletable:
            g.edge(target, node_id, close)
        g.edge(close, _DELETE.closing(0), final)
    if targets.modifiable:
        target = g.new()
        g.edge(head, _MODIFY.opening(), target)
        for node_id, ops in targets.modifiable.items():
            after = g.new()
            g.edge(target, node_id, after)
            op = g.new()
            g.edge(after, _MODIFY.between(0), op)
            close = g.new()
            for name in ops:
                g.edge(op, name, close)
            g.edge(close, _MODIFY.closing(1), final)
    if options.set_prompt and targets.prompted:
        target = g.new()
        g.edge(head, _SET_PROMPT.opening(), target)
        after = g.new()
        for node_id in targets.prompted:
            g.edge(target, node_id, after)
        text = g.new(free=FreeText(options.prompt_tokens, options.min_prompt_tokens, "<"))
        g.edge(after, _SET_PROMPT.between(0), text)
        g.edge(text, _SET_PROMPT.closing(1), final)


def _feasible(workflow: Workflow, registry: OperatorRegistry, kind: str | None, edit: str, *args: str) -> bool:
    """Whether ``builder.<edit>(*args)`` succeeds and leaves a valid workflow (the canvas editor's test,
    its rule on operators that end the workflow included)."""
    from flowsteer.canvas._edits import ends_early
    from flowsteer.workflow.builder import WorkflowBuilder

    builder = WorkflowBuilder(workflow, registry=registry, kind=kind)
    try:
        getattr(builder, edit)(*args)
    except UserError:
        return False
    if builder.validate():
        return False
    return len(ends_early(builder.workflow, registry)) <= len(ends_early(workflow, registry))
