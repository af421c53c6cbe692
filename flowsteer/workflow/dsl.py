"""The workflow text form (the DSL the director reads), compatible with the paper.

Canonical text::

    Plan -> [Programmer, Custom] -> ScEnsemble -> Verify ? Revise : done -> Format
    (Review -> Revise) * 3

Grammar (whitespace between tokens is free; ``→`` is accepted for ``->`` and ``×`` for ``*``)::

    chain     := element ("->" element)*
    element   := OP "?" branch ":" (branch | "done")      # conditional: on_fail, then on_pass
               | primary
    primary   := OP
               | "[" chain ("," chain)+ "]"                # parallel: every branch is a chain
               | "(" chain ")" "*" INT                     # loop, INT in 1..10
               | "(" chain ")"                             # grouping only
    branch    := primary                                   # multi-step branches need "( ... )"

The branch after ``?`` runs when the check FAILS; the one after ``:`` when it passes (``done`` =
nothing). A parenthesised group without ``* N`` only groups: ``A -> (B -> C)`` is ``A -> B -> C``.
Prompts and params are not part of the text form (see :mod:`flowsteer.workflow.serialize` for that).

With a registry, operator names are matched ignoring case and normalised to the registered
spelling; an unknown name raises :class:`~flowsteer.errors.DSLParseError` at its position.
``parse`` checks syntax and vocabulary only; structural rules (checkers as conditions, ensembler
placement) are :func:`flowsteer.workflow.validation.validate`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowsteer.errors import DSLParseError
from flowsteer.workflow.ir import (
    DONE,
    MAX_LOOP_ITERATIONS,
    MIN_LOOP_ITERATIONS,
    Chain,
    Conditional,
    Loop,
    OperatorNode,
    Parallel,
    Workflow,
    render,
)

if TYPE_CHECKING:
    from flowsteer.operators.registry import OperatorRegistry

__all__ = ["parse", "render", "DONE"]

"""The keyword for an empty pass branch: ``Verify ? Revise : done``."""

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<arrow>->|→)"
    r"|(?P<int>-?\d+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[\[\](),?:*×])"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "int", "->", one punctuation character, or "end"
    text: str
    pos: int


def _describe(token: _Token) -> str:
    return "end of text" if token.kind == "end" else repr(token.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise DSLParseError(f"unexpected character {text[pos]!r}", text, pos)
        kind = match.lastgroup or ""
        if kind == "arrow":
            tokens.append(_Token("->", "->", pos))
        elif kind == "punct":
            tokens.append(_Token("*" if match.group() == "×" else match.group(), match.group(), pos))
        elif kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the token list; builds steps with blank ids."""

    def __init__(self, text: str, registry: OperatorRegistry | None) -> None:
        self.text = text
        self.registry = registry
        self.tokens = _tokenize(text)
        self.index = 0

    # -- token helpers ---------------------------------------------------------------------
    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> DSLParseError:
        return DSLParseError(message, self.text, (token or self.current).pos)

    def expect(self, kind: str, hint: str) -> _Token:
        if self.current.kind != kind:
            raise self.error(f"expected {kind!r} {hint}, got {_describe(self.current)}")
        return self.advance()

    # -- grammar ---------------------------------------------------------------------------
    def parse_workflow(self) -> Chain:
        if self.current.kind == "end":
            return ()
        chain = self.parse_chain()
        if self.current.kind != "end":
            raise self.error(f"expected '->' or end of text, got {_describe(self.current)}")
        return chain

    def parse_chain(self) -> Chain:
        steps = list(self.parse_element())
        while self.current.kind == "->":
            self.advance()
            steps.extend(self.parse_element())
        return tuple(steps)

    def parse_element(self) -> Chain:
        start = self.current
        items = self.parse_primary()
        if self.current.kind != "?":
            return items
        if start.kind != "name" or len(items) != 1 or not isinstance(items[0], OperatorNode):
            raise self.error(
                "a condition must be a single checker operator, e.g. 'Verify ? Revise : done'",
                self.current,
            )
        self.advance()
        if self._at_done():
            raise self.error(
                "the branch after '?' runs when the check fails and cannot be 'done'; "
                "write 'Check ? OnFail : done'"
            )
        check = items[0].operator
        if self.current.kind in (":", "end"):
            raise self.error(f"the conditional is missing the operator that runs when {check} fails: write "
                             f"'{check} ? Revise : done' (or '{check} ? Revise : Format')")
        on_fail = self.parse_primary()
        self.expect(":", "after the fail branch (write ': done' when nothing runs on pass)")
        if self.current.kind in ("end", "->", ",", "]", ")"):
            raise self.error(f"the conditional is missing its pass branch after ':': write 'done' when "
                             f"nothing runs on pass, as in '{check} ? Revise : done'")
        if self._at_done():
            self.advance()
            on_pass: Chain = ()
        else:
            on_pass = self.parse_primary()
        return (Conditional(items[0], on_fail, on_pass),)

    def parse_primary(self) -> Chain:
        token = self.current
        match token.kind:
            case "name":
                return (self.parse_operator(),)
            case "[":
                return (self.parse_parallel(),)
            case "(":
                return self.parse_group()
        raise self.error(f"expected an operator, '[' or '(', got {_describe(token)}")

    def parse_operator(self) -> OperatorNode:
        token = self.advance()
        if token.text.lower() == DONE:
            raise self.error(
                "'done' can only be a conditional's pass branch, as in 'Verify ? Revise : done'", token
            )
        if self.registry is None:
            return OperatorNode(token.text)
        spec = self.registry.lookup_case_insensitive(token.text)
        if spec is None:
            valid = ", ".join(self.registry.names())
            raise self.error(f"unknown operator {token.text!r}; valid operators: {valid}", token)
        return OperatorNode(spec.name)

    def parse_parallel(self) -> Parallel:
        opening = self.advance()
        branches = [self.parse_chain()]
        while self.current.kind == ",":
            self.advance()
            branches.append(self.parse_chain())
        self.expect("]", "to close the parallel block opened at position " f"{opening.pos}")
        if len(branches) < 2:
            raise self.error(
                "a parallel block needs at least 2 branches separated by ', ', e.g. '[Programmer, Custom]'",
                opening,
            )
        return Parallel(tuple(branches))

    def parse_group(self) -> Chain:
        opening = self.advance()
        if self.current.kind == ")":
            raise self.error("empty parentheses; put at least one operator inside")
        body = self.parse_chain()
        self.expect(")", f"to close the '(' at position {opening.pos}")
        if self.current.kind != "*":
            return body
        self.advance()
        count_token = self.current
        if count_token.kind != "int":
            raise self.error(
                f"expected a loop count ({MIN_LOOP_ITERATIONS}..{MAX_LOOP_ITERATIONS}) after '*', "
                f"got {_describe(count_token)}"
            )
        self.advance()
        count = int(count_token.text)
        if not MIN_LOOP_ITERATIONS <= count <= MAX_LOOP_ITERATIONS:
            raise self.error(
                f"loop count {count} is out of range; use {MIN_LOOP_ITERATIONS}..{MAX_LOOP_ITERATIONS}",
                count_token,
            )
        return (Loop(body, count),)

    def _at_done(self) -> bool:
        return self.current.kind == "name" and self.current.text.lower() == DONE


def parse(text: str, registry: OperatorRegistry | None = None) -> Workflow:
    """Parse the text form into a :class:`Workflow` whose ids are assigned in pre-order.

    Empty (or whitespace-only) text gives the empty workflow. Raises
    :class:`~flowsteer.errors.DSLParseError` (with the 0-based ``position``) on a syntax error, a
    loop count outside 1..10, or, when ``registry`` is given, an unknown operator name.
    """
    from flowsteer.workflow.builder import WorkflowBuilder

    steps = _Parser(text, registry).parse_workflow()
    builder = WorkflowBuilder(registry=registry)
    for step in steps:
        builder.add(step)
    return builder.workflow
