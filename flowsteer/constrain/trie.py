"""The action grammar over one tokenizer's canonical tokens: a trie automaton, no torch needed.

Each grammar state's pieces are tokenised by the tokenizer itself (``encode(piece)``) and put in a
trie, so the constrained model spells ``Programmer`` the way it would unconstrained (one or two
tokens), never letter by letter. ENVIRONMENT.md measured why: character-level constraints cost
~50% more tokens per action and pull the sampled distribution away from the model's own.

An automaton state is a frozenset of positions ``(trie_node, free_count)`` (usually one): a piece
that ends at a trie node moves to the next grammar state's root, and a state with a
:class:`~flowsteer.constrain.grammar.FreeText` loop counts the free tokens it took. With a token
budget (``remaining``), only tokens after which the output can still be completed in time are
allowed, so a constrained output is complete even when ``max_new_tokens`` is tight.
"""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowsteer.constrain.grammar import ActionGrammar, FreeText
from flowsteer.errors import UserError

__all__ = ["Position", "AutomatonState", "Allowed", "TokenAutomaton", "check_canonical", "eos_ids_of"]

logger = logging.getLogger(__name__)

Position = tuple[int, int]
"""``(trie_node, free_tokens_taken)``."""
AutomatonState = frozenset[Position]

_INF = 1 << 30
_CACHES: dict[int, tuple[Any, dict[str, tuple[int, ...]], dict[str, bytearray]]] = {}


def _cache(tokenizer: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, bytearray]]:
    """Per-tokenizer memo of piece encodings and free-token tables (dropped with the tokenizer)."""
    key = id(tokenizer)
    entry = _CACHES.get(key)
    if entry is None or entry[0]() is not tokenizer:
        def forget(_ref: Any, k: int = key) -> None:
            _CACHES.pop(k, None)

        entry = (weakref.ref(tokenizer, forget), {}, {})
        _CACHES[key] = entry
    return entry[1], entry[2]


def eos_ids_of(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """End-of-sequence ids of the tokenizer (and of ``model.generation_config`` when given)."""
    ids: set[int] = set()
    for source in (tokenizer, getattr(model, "generation_config", None)):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if not ids:
        raise UserError("the tokenizer has no eos_token_id; pass eos_ids= to the constraint")
    return tuple(sorted(ids))


@dataclass(frozen=True)
class Allowed:
    """What the next token may be in one automaton state."""

    tokens: frozenset[int]
    """Token ids that continue a piece."""
    free: tuple[str, ...]
    """Forbidden-character sets of the free-text loops open now (any token free of one is allowed)."""
    eos: bool
    """Whether the output may end here."""


class TokenAutomaton:
    """``grammar`` compiled over ``tokenizer``'s canonical tokens (see the module docstring)."""

    def __init__(self, grammar: ActionGrammar, tokenizer: Any, *, eos_ids: Iterable[int] | None = None) -> None:
        self.grammar = grammar
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.eos_ids = tuple(eos_ids) if eos_ids is not None else eos_ids_of(tokenizer)
        self._encodings, self._free_tables = _cache(tokenizer)
        self.children: list[dict[int, int]] = []
        self.ends: list[list[int]] = []
        self.roots: list[int] = []
        self._root_of: dict[int, int] = {}
        for s, state in enumerate(grammar.states):
            root = self._new_node()
            self.roots.append(root)
            self._root_of[root] = s
            for edge in state.edges:
                node = root
                for token in self.encode(edge.text):
                    node = self.children[node].setdefault(token, len(self.children))
                    if node == len(self.children):
                        self._new_node()
                self.ends[node].append(edge.to)
        self._dist: dict[int, int] = {}
        self.memo: dict[Any, Any] = {}
        """Scratch space for engine-specific caches (e.g. torch masks)."""

    def _new_node(self) -> int:
        self.children.append({})
        self.ends.append([])
        return len(self.children) - 1

    # -- tokenizer helpers -------------------------------------------------------------------------
    def encode(self, text: str) -> tuple[int, ...]:
        """The tokenizer's own tokens for ``text`` (no special tokens added); memoised."""
        ids = self._encodings.get(text)
        if ids is None:
            ids = tuple(self.tokenizer.encode(text, add_special_tokens=False))
            if not ids:
                raise UserError(f"the tokenizer encodes the grammar piece {text!r} to no tokens")
            self._encodings[text] = ids
        return ids

    def free_table(self, forbid: str) -> bytearray:
        """``table[t] == 1`` when token ``t`` may appear in free text that forbids ``forbid``."""
        table = self._free_tables.get(forbid)
        if table is None:
            special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
            special.update(getattr(self.tokenizer, "added_tokens_decoder", {}) or {})
            texts = self.tokenizer.batch_decode([[i] for i in range(self.vocab_size)])
            table = bytearray(
                1 if i not in special and text and not any(ch in text for ch in forbid) else 0
                for i, text in enumerate(texts))
            self._free_tables[forbid] = table
        return table

    # -- automaton ---------------------------------------------------------------------------------
    def start(self) -> AutomatonState:
        return frozenset({(self.roots[self.grammar.start], 0)})

    def _free(self, node: int) -> FreeText | None:
        s = self._root_of.get(node)
        return None if s is None else self.grammar.states[s].free

    def _closure(self, node: int, out: set[Position]) -> None:
        if self.children[node]:
            out.add((node, 0))
        for to in self.ends[node]:
            out.add((self.roots[to], 0))

    def advance(self, state: AutomatonState, token: int) -> AutomatonState:
        """The state after ``token`` (empty when the token is not allowed)."""
        out: set[Position] = set()
        for node, count in state:
            free = self._free(node)
            if free is not None and count < free.min_tokens:
                pass
            elif (child := self.children[node].get(token)) is not None:
                self._closure(child, out)
            if (free is not None and count < free.max_tokens and token < self.vocab_size
                    and self.free_table(free.forbid)[token]):
                out.add((node, count + 1))
        return frozenset(out)

    def replay(self, token_ids: Sequence[int]) -> list[AutomatonState]:
        """The state before each token of ``token_ids`` and after the last (``len + 1`` states)."""
        states = [self.start()]
        for token in token_ids:
            states.append(self.advance(states[-1], int(token)))
        return states

    def accepts_ids(self, token_ids: Sequence[int]) -> bool:
        """Whether ``token_ids`` (no end token) is a complete output of the automaton."""
        state = self.replay(token_ids)[-1]
        return self.allowed(state).eos

    def is_accepting(self, node: int, count: int) -> bool:
        s = self._root_of.get(node)
        if s is None or not self.grammar.states[s].accept:
            return False
        free = self.grammar.states[s].free
        return free is None or count >= free.min_tokens

    def distance(self, node: int) -> int:
        """Fewest tokens from ``node`` (with no free tokens taken) to a point where the output may end."""
        cached = self._dist.get(node)
        if cached is not None:
            return cached
        free = self._free(node)
        best = _INF
        s = self._root_of.get(node)
        if s is not None and self.grammar.states[s].accept:
            best = 0
        for child in self.children[node].values():
            best = min(best, 1 + self._after(child))
        if free is not None:
            best += free.min_tokens
        self._dist[node] = best
        return best

    def _after(self, node: int) -> int:
        """Distance once the token leading to ``node`` is taken (pieces ending there included)."""
        best = self.distance(node) if self.children[node] else _INF
        for to in self.ends[node]:
            best = min(best, self.distance(self.roots[to]))
        return best

    def allowed(self, state: AutomatonState, remaining: int | None = None) -> Allowed:
        """Next-token options in ``state``; with ``remaining`` tokens left (this one included),
        only tokens after which the output can still be completed and ended (end-of-sequence
        token included) in time."""
        tokens: set[int] = set()
        free_sets: list[str] = []
        eos = False
        # tokens left after this one, keeping the last for the end-of-sequence token
        budget = _INF if remaining is None else remaining - 2
        for node, count in state:
            free = self._free(node)
            eos = eos or self.is_accepting(node, count)
            if free is None or count >= free.min_tokens:
                for token, child in self.children[node].items():
                    if self._after(child) <= budget:
                        tokens.add(token)
            if free is not None and count < free.max_tokens and free.forbid not in free_sets:
                base = self.distance(node) - free.min_tokens
                if base + max(0, free.min_tokens - count - 1) <= budget:
                    free_sets.append(free.forbid)
        return Allowed(frozenset(tokens), tuple(free_sets), eos)

    def sample_ids(self, rng: random.Random, max_tokens: int = 200) -> list[int]:
        """A random complete token sequence (uniform over allowed options; the end token, which
        counts against ``max_tokens``, not included); for tests."""
        state = self.start()
        out: list[int] = []
        for step in range(max_tokens):
            allowed = self.allowed(state, max_tokens - step)
            options = sorted(allowed.tokens)
            for forbid in allowed.free:
                table = self.free_table(forbid)
                options += [t for t in rng.sample(range(self.vocab_size), 20) if table[t]]
            if allowed.eos and (not options or rng.random() < 0.3):
                return out
            if not options:
                break
            token = rng.choice(options)
            out.append(token)
            state = self.advance(state, token)
        return out


def check_canonical(grammar: ActionGrammar, tokenizer: Any, *, samples: int = 50, seed: int = 0) -> list[str]:
    """Sampled outputs of ``grammar`` whose canonical tokenisation the automaton rejects (ideally none).

    An empty list means the piece-wise tokenisation agrees with the tokenizer on whole actions, so the
    constrained model writes the tokens it would write unconstrained.
    """
    automaton = TokenAutomaton(grammar, tokenizer)
    rng = random.Random(seed)
    bad = []
    for _ in range(samples):
        text = grammar.sample(rng)
        if not automaton.accepts_ids(tokenizer.encode(text, add_special_tokens=False)):
            bad.append(text)
    if bad:
        logger.warning("%d of %d sampled actions are not canonical for this tokenizer, e.g. %r",
                       len(bad), samples, bad[0])
    return bad
