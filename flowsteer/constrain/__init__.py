"""Grammar-constrained decoding for the Flow-Director: every BUILDING turn one valid action.

* :mod:`~flowsteer.constrain.grammar`: the action language as data, built from the operator
  registry and the canvas state (tokenizer-independent).
* :mod:`~flowsteer.constrain.trie`: that grammar over a tokenizer's canonical tokens (an automaton).
* :mod:`~flowsteer.constrain.processor`: the transformers logits processor and the log-prob replay
  the trainer uses (imports torch; loaded lazily).
* :mod:`~flowsteer.constrain.regex`: the same grammar as a regex for vLLM ``structured_outputs``.
* :mod:`~flowsteer.constrain.constraint`: :func:`action_constraint`, the director's hook.

>>> from flowsteer.director.config import DirectorConfig              # doctest: +SKIP
>>> config = DirectorConfig(constraint=action_constraint())          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from flowsteer.constrain.constraint import ActionConstraint, action_constraint, workflow_of
from flowsteer.constrain.grammar import (
    ActionGrammar,
    Edge,
    FreeText,
    GrammarOptions,
    GrammarState,
    action_grammar,
    prompt_grammar,
)
from flowsteer.constrain.regex import structured_outputs_body, to_regex
from flowsteer.constrain.trie import TokenAutomaton, check_canonical, eos_ids_of

__all__ = [
    "ActionConstraint",
    "ActionGrammar",
    "Edge",
    "FreeText",
    "GrammarOptions",
    "GrammarState",
    "GrammarLogitsProcessor",
    "GrammarProcessorFactory",
    "TokenAutomaton",
    "action_constraint",
    "action_grammar",
    "allowed_masks",
    "check_canonical",
    "constrained_logprobs",
    "eos_ids_of",
    "prompt_grammar",
    "structured_outputs_body",
    "to_regex",
    "workflow_of",
]

_TORCH_NAMES = ("GrammarLogitsProcessor", "GrammarProcessorFactory", "allowed_masks", "constrained_logprobs")


def __getattr__(name: str) -> Any:
    """The torch-backed names load :mod:`flowsteer.constrain.processor` on first use."""
    if name in _TORCH_NAMES:
        from flowsteer.constrain import processor

        return getattr(processor, name)
    raise AttributeError(f"module 'flowsteer.constrain' has no attribute {name!r}")
