"""The director's hook: per turn, the grammar of valid outputs and the engine-specific way to enforce it.

:func:`action_constraint` returns an :class:`ActionConstraint`, a
:data:`flowsteer.director.config.ConstraintFactory`: called as ``(observation, registry, model)``
before a turn, it returns the extra model-call kwargs:

* a model with a ``tokenizer`` (:class:`~flowsteer.models.local.LocalChatModel`):
  ``{"logits_processor_factory": GrammarProcessorFactory}``;
* an OpenAI-compatible client (vLLM server): ``{"extra_body": {"structured_outputs": {"regex": ...}}}``;
* anything else: ``None`` (unconstrained).

``observation`` is best the :class:`~flowsteer.canvas.Canvas` itself (exact node ids, and with
``finish="when_allowed"`` the finish verdict). A bare :class:`~flowsteer.canvas.Observation` also
works: the workflow is re-read from its DSL and the node ids from its ``[Nodes]`` section; when those
do not line up (a long, truncated section) the grammar offers no node-targeted actions rather than
wrong ids.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from flowsteer.canvas.env import Observation
from flowsteer.constrain.grammar import ActionGrammar, GrammarOptions, action_grammar, prompt_grammar
from flowsteer.constrain.record import CONSTRAINT_RECORD_KEY
from flowsteer.models.calls import constraint_engine, unwrap_model
from flowsteer.operators.registry import OperatorRegistry, default_registry
from flowsteer.tasks import Task
from flowsteer.workflow.ir import Conditional, Loop, OperatorNode, Parallel, Step, Workflow

__all__ = ["ActionConstraint", "action_constraint", "constraint_record", "workflow_of"]

logger = logging.getLogger(__name__)

_NODE_LINE = re.compile(r"(node_\d+): ")
_NODES_SECTION = re.compile(r"\[Nodes\]:?\s*(.*)")


def _rename(step: Step, ids: dict[str, str]) -> Step:
    new_id = ids.get(step.id, step.id)
    match step:
        case OperatorNode():
            return dataclasses.replace(step, id=new_id)
        case Parallel(branches=branches):
            return Parallel(tuple(tuple(_rename(s, ids) for s in b) for b in branches), new_id)
        case Conditional(check=check, on_fail=on_fail, on_pass=on_pass):
            checked = _rename(check, ids)
            assert isinstance(checked, OperatorNode)
            return Conditional(checked, tuple(_rename(s, ids) for s in on_fail),
                               tuple(_rename(s, ids) for s in on_pass), new_id)
        case Loop(body=body, max_iterations=count):
            return Loop(tuple(_rename(s, ids) for s in body), count, new_id)
    return step


def _from_observation(observation: Any, registry: OperatorRegistry) -> tuple[Workflow, bool]:
    """``(workflow, ids_known)`` from an Observation's DSL and its ``[Nodes]`` ids."""
    from flowsteer.errors import UserError
    from flowsteer.workflow.dsl import parse

    dsl = getattr(observation, "dsl", "") or ""
    if not dsl.strip():
        return Workflow(), True
    try:
        parsed = parse(dsl, registry)
    except UserError:
        logger.warning("could not read the observation's DSL %r; offering additions only", dsl[:80])
        return Workflow(), False
    section = _NODES_SECTION.search(getattr(observation, "text", "") or "")
    listed = _NODE_LINE.findall(section.group(1)) if section else []
    if len(listed) != len(parsed.ids()) or len(set(listed)) != len(listed):
        return parsed, False
    mapping = dict(zip(parsed.ids(), listed, strict=True))
    steps = tuple(_rename(s, mapping) for s in parsed.steps)
    top = max(int(i.split("_")[1]) for i in listed) + 1
    return Workflow(steps, next_id=top), True


@runtime_checkable
class CanvasView(Protocol):
    """What the constraint reads of a canvas (:class:`~flowsteer.canvas.Canvas` is one): its state,
    its workflow with the canvas's node ids, the task, the config (finish rule, node limit) and the
    last run (for the finish rule's checks)."""

    @property
    def state(self) -> Any: ...
    @property
    def workflow(self) -> Workflow: ...
    @property
    def task(self) -> Task | None: ...
    @property
    def config(self) -> Any: ...
    @property
    def last_execution(self) -> Any: ...


def workflow_of(view: CanvasView | Observation, registry: OperatorRegistry | None = None) -> tuple[Workflow, bool]:
    """The current workflow of a canvas or an observation; the flag says whether its node ids are
    the canvas's own. An observation built by hand (no ``workflow``) is read from its DSL and its
    ``[Nodes]`` section."""
    if isinstance(view, Observation):
        if view.workflow is not None:
            return view.workflow, True
        return _from_observation(view, registry or default_registry())
    return view.workflow, True


def _state_of(view: CanvasView | Observation) -> str:
    return str(view.state.value)


def _finish_verdict(view: CanvasView | Observation, workflow: Workflow, registry: OperatorRegistry) -> bool | None:
    if isinstance(view, Observation) or view.task is None:
        return None  # an observation does not carry the finish rule: finish stays offered
    return not view.config.finish.check(workflow, view.task, view.last_execution, registry)


@dataclass(frozen=True)
class ActionConstraint:
    """Builds each turn's grammar and hands it to the model in the form its engine takes."""

    registry: OperatorRegistry | None = None
    """Overrides the registry the director passes (None: use the director's)."""
    options: GrammarOptions = field(default_factory=GrammarOptions)
    prompt_turns: bool = True
    """Constrain AWAITING_PROMPT turns to free text without ``<`` (else leave them free)."""
    max_new_tokens: int | None = None
    """The call's token limit; when set, outputs are forced to complete within it."""
    eos_ids: tuple[int, ...] | None = None
    """End tokens (None: the tokenizer's and the model's generation config's)."""

    def grammar(self, observation: CanvasView | Observation,
                registry: OperatorRegistry | None = None) -> ActionGrammar | None:
        """The grammar of the next turn's output (None: leave the turn unconstrained)."""
        registry = self.registry or registry or default_registry()
        if _state_of(observation) == "awaiting_prompt":
            if not self.prompt_turns:
                return None
            return prompt_grammar(self.options.prompt_tokens, min_tokens=self.options.min_prompt_tokens)
        workflow, ids_known = workflow_of(observation, registry)
        options = self.options
        if options.max_nodes is None and not isinstance(observation, Observation):
            options = dataclasses.replace(options, max_nodes=observation.config.max_nodes)
        if not ids_known:  # never offer ids we could not confirm
            options = dataclasses.replace(options, node_actions=False)
        verdict = _finish_verdict(observation, workflow, registry) if options.finish == "when_allowed" else None
        task = None if isinstance(observation, Observation) else observation.task
        return action_grammar(registry, workflow, options, finish_allowed=verdict,
                              kind=task.kind if task is not None else None)

    def __call__(self, observation: CanvasView | Observation, registry: OperatorRegistry | None,
                 model: Any) -> Mapping[str, Any] | None:
        """The call kwargs for ``model`` plus the grammar record under
        :data:`~flowsteer.constrain.record.CONSTRAINT_RECORD_KEY` (the director takes it out; pop it
        when calling a model yourself)."""
        grammar = self.grammar(observation, registry)
        if grammar is None:
            return None
        model = unwrap_model(model)
        engine = constraint_engine(model)
        if engine == "logits_processor":
            from flowsteer.constrain.processor import GrammarProcessorFactory
            from flowsteer.constrain.trie import eos_ids_of

            tokenizer = model.tokenizer
            eos = self.eos_ids or eos_ids_of(tokenizer, getattr(model, "model", None))
            return {"logits_processor_factory": GrammarProcessorFactory(
                        grammar, tokenizer, eos_ids=eos, max_new_tokens=self.max_new_tokens),
                    CONSTRAINT_RECORD_KEY: constraint_record(grammar, eos, self.max_new_tokens)}
        if engine == "structured_outputs":
            from flowsteer.constrain.regex import structured_outputs_body

            # the server's own end tokens and no forced completion: the replay uses the trainer's
            return {"extra_body": structured_outputs_body(grammar),
                    CONSTRAINT_RECORD_KEY: constraint_record(grammar, self.eos_ids, None)}
        logger.debug("model %s cannot be constrained; the turn runs unconstrained", type(model).__name__)
        return None


def constraint_record(grammar: ActionGrammar, eos_ids: Iterable[int] | None,
                      max_new_tokens: int | None) -> dict[str, Any]:
    """What a constrained call stores with its tokens so the trainer can rebuild the same masks
    (:attr:`flowsteer.director.TokenRecord.constraint`)."""
    return {"grammar": grammar.to_json(), "eos_ids": None if eos_ids is None else [int(t) for t in eos_ids],
            "max_new_tokens": max_new_tokens}


def action_constraint(registry: OperatorRegistry | None = None, **options: Any) -> ActionConstraint:
    """The constraint factory to put in ``DirectorConfig(constraint=...)``.

    Keyword arguments are :class:`GrammarOptions` fields (``think_tokens``, ``max_list``,
    ``finish``, ...) or :class:`ActionConstraint` fields (``prompt_turns``, ``max_new_tokens``,
    ``eos_ids``).
    """
    own = {k: options.pop(k) for k in ("prompt_turns", "max_new_tokens", "eos_ids") if k in options}
    return ActionConstraint(registry, GrammarOptions(**options), **own)
