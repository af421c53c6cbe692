"""Director configuration: one dataclass, every field documented, checked on construction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flowsteer.canvas.env import DEFAULT_FEEDBACK_CHARS, DEFAULT_MAX_TURNS
from flowsteer.errors import UserError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from flowsteer.operators.registry import OperatorRegistry

__all__ = ["DirectorConfig", "ConstraintFactory", "CONSTRAINT_RECORD_KEY"]

ConstraintFactory = Callable[["Any", "OperatorRegistry", "BaseChatModel"], "Mapping[str, Any] | None"]
"""``(canvas, registry, model) -> extra model-call kwargs | None``, called before every director call
(the canvas gives the state, exact node ids and whether finish would be accepted; a turn in
AWAITING_PROMPT is free text). :func:`flowsteer.constrain.action_constraint` builds one. For a :class:`~flowsteer.models.local.LocalChatModel` return
``{"logits_processor_factory": f}`` with ``f(prompt_ids, messages) -> LogitsProcessor`` (the action
grammar for this canvas state); for a vLLM server return e.g. ``{"extra_body": {"structured_outputs":
{...}}}``. ``None`` leaves the turn unconstrained. The mapping may also hold ``"flowsteer_constraint"``
(see :data:`CONSTRAINT_RECORD_KEY`): the director takes it out of the call kwargs and stores it with
the turn's tokens (:attr:`~flowsteer.director.TokenRecord.constraint`) for the trainer's replay."""

from flowsteer.constrain.record import CONSTRAINT_RECORD_KEY  # noqa: E402 (re-exported: its old home)


@dataclass(frozen=True)
class DirectorConfig:
    """How the Flow-Director talks to its model and to the canvas."""

    max_turns: int = DEFAULT_MAX_TURNS
    """Most canvas turns per episode (prompt-writing and failed turns count, as in the paper). The
    canvases this director builds take it (:meth:`canvas_config`), and the canvas enforces it; a
    canvas you pass in keeps its own limit."""
    context_budget: int = 16384
    """Most tokens one director call may see (prompt + ``max_action_tokens``); older turns are
    compressed, then the feedback is truncated, so no call ever exceeds it."""
    temperature: float = 0.6
    top_p: float = 0.95
    refused_temperature: float = 0.6
    """Sampling temperature of a call right after a turn the canvas refused or could not parse,
    when ``temperature`` is 0 (greedy): the greedy director sees the same canvas again and would
    repeat the refused action until the turn limit. 0 keeps those calls greedy too."""
    max_action_tokens: int = 512
    """Token limit of a BUILDING turn (thinking included)."""
    max_prompt_tokens: int = 256
    """Token limit of a prompt-writing (AWAITING_PROMPT) turn."""
    max_repair_tokens: int = 128
    repair_attempts: int = 1
    """Extra calls when an output holds no valid action (0 disables repair)."""
    feedback_chars: int = DEFAULT_FEEDBACK_CHARS
    """Longest canvas feedback block: the canvases this director builds fit their sections into it
    (:meth:`canvas_config`); the context budget may shrink it further, by section."""
    history_turns: int = 12
    """Most earlier turns listed in the per-turn summary (older ones are counted, not listed)."""
    example_turn: bool = True
    """Show one worked example turn (a user/assistant pair) before the real turn. Untrained small
    models emit no valid action without it (ENVIRONMENT.md: 0/20 vs 11/20 for SmolLM2-135M)."""
    task_hints: bool = True
    """Add the task-type hint (math / qa / code) to the system prompt."""
    usage_hints: bool = True
    """List each operator's usage hint in the system prompt (off: descriptions only, ~40% shorter,
    which matters for a small model's context and CPU prefill time)."""
    constraint: ConstraintFactory | None = None
    """Grammar constraint for BUILDING turns (see :data:`ConstraintFactory`)."""
    fallback: bool = False
    """When the episode ends without a finishable workflow, answer with a named template workflow
    and mark the trajectory (see :mod:`flowsteer.fallback`). On for ``flowsteer run``; keep it off
    for training and evaluation, where it would hide the director's failures."""
    fallback_templates: Mapping[str, str] | None = None
    """Template name or task kind -> DSL (None: :data:`flowsteer.fallback.FALLBACK_TEMPLATES`)."""
    write_prompts: bool = True
    """Write a prompt for each new node (one extra turn per operator). False: nodes run on their
    operator's own instructions (``CanvasConfig.write_prompts``), one turn per action."""
    system_prompt_file: str = "system.txt"
    """Package-data template of the system prompt (in ``flowsteer/director/prompts``)."""
    extra_call_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Passed to every director model call (e.g. ``{"seed": 0}``)."""

    @classmethod
    def small_model(cls, *, constrained: bool = False, **overrides: Any) -> DirectorConfig:
        """Settings for a small local director on CPU (the embedded SmolLM2-135M): short outputs,
        a compact prompt and a 2K context keep a turn to a few seconds on two cores; nodes run on their
        operators' own instructions (no prompt-writing turns).

        ``constrained=True`` adds the action grammar (:func:`flowsteer.constrain.action_constraint`),
        with room for the longest action and ``finish`` offered only when the canvas would accept it.

        Decoding is greedy (``temperature=0``): a small director serves its most likely action. The
        shipped director's eval (``benchmarks/bench_learning.py``) measures both: sampled at 0.6 it
        left the learned workflow in about one episode of eight (a low-probability ``Revise`` or a
        dropped checker), greedy it builds the learned workflow every time. After a refused turn
        the next call samples (``refused_temperature``), so a refusal is not repeated to the turn
        limit. Training samples: the trainer's config sets the rollout temperature
        (``director.temperature``, default 0.6).
        """
        values: dict[str, Any] = dict(
            max_turns=10, context_budget=2048, max_action_tokens=48, max_prompt_tokens=40, max_repair_tokens=48,
            usage_hints=False, feedback_chars=600, history_turns=8, write_prompts=False, temperature=0.0,
        )
        if constrained:
            from flowsteer.constrain import action_constraint

            # a conditional is ~40 tokens of SmolLM2's tokenizer; 64 leaves room for every action
            values["max_action_tokens"] = 64
            values["constraint"] = action_constraint(max_new_tokens=64, prompt_tokens=values["max_prompt_tokens"],
                                                     finish="when_allowed")
        values.update(overrides)
        return cls(**values)

    def canvas_config(self, **overrides: Any) -> Any:
        """The :class:`~flowsteer.canvas.CanvasConfig` this director expects: its turn limit, its
        feedback size (the canvas fits its sections into it, so the director never cuts the block
        again) and whether nodes get prompt-writing turns. The one place these limits pass from the
        director to a canvas; ``overrides`` sets other canvas fields."""
        from flowsteer.canvas import CanvasConfig

        values: dict[str, Any] = dict(max_turns=self.max_turns, feedback_chars=self.feedback_chars,
                                      write_prompts=self.write_prompts)
        values.update(overrides)
        return CanvasConfig(**values)

    def __post_init__(self) -> None:
        checks = [
            (self.max_turns >= 1, "max_turns must be >= 1"),
            (self.context_budget >= 512, "context_budget must be >= 512 tokens"),
            (self.temperature >= 0, "temperature must be >= 0 (0 = greedy)"),
            (self.refused_temperature >= 0, "refused_temperature must be >= 0 (0 = stay greedy)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.max_action_tokens >= 8 and self.max_prompt_tokens >= 8, "token limits must be >= 8"),
            (self.repair_attempts >= 0, "repair_attempts must be >= 0"),
            (self.feedback_chars >= 100, "feedback_chars must be >= 100"),
            (self.max_action_tokens + self.max_repair_tokens + 512 < self.context_budget,
             "context_budget must leave room for the prompt after max_action_tokens"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"DirectorConfig: {message}")
        if self.fallback_templates is not None:
            object.__setattr__(self, "fallback_templates", MappingProxyType(dict(self.fallback_templates)))
        object.__setattr__(self, "extra_call_kwargs", MappingProxyType(dict(self.extra_call_kwargs)))
