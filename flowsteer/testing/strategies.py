"""Hypothesis strategies generating VALID workflows, by construction (no filtering).

Use them in property tests of anything that consumes workflows (DSL round-trips, the LangGraph
compiler's equivalence with the interpreter, rewards)::

    from hypothesis import given
    from flowsteer.testing.strategies import workflows

    @given(workflows(registry))
    def test_something(workflow): ...

Operator names are drawn from the registry by role, so user-registered operators appear too.
Construction rules that keep every sample valid under :func:`flowsteer.workflow.validation.validate`:
ensemblers appear only right after a parallel block, conditions are always checkers, parallel
blocks have 2..3 non-empty branches, loops run 1..10 times, every chain is non-empty.
Structure nesting is bounded by ``max_depth`` (0 = plain chains of operators).

Needs the ``dev`` extra (hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.workflow.builder import WorkflowBuilder
from flowsteer.workflow.ir import (
    MAX_LOOP_ITERATIONS,
    MIN_LOOP_ITERATIONS,
    Chain,
    Conditional,
    Loop,
    OperatorNode,
    Parallel,
    Step,
    Workflow,
)

__all__ = ["operator_nodes", "chains", "workflows", "PROMPTS"]

PROMPTS: tuple[str, ...] = (
    "",
    "Think step by step.",
    "Be concise and give only the final answer.",
    "Check every arithmetic step.",
    "Use the plan above.",
)
"""The prompts sampled for generated nodes (short and fixed, so generation stays fast)."""

_MAX_INNER_STEPS = 3


def operator_nodes(
    registry: OperatorRegistry,
    *,
    roles: Sequence[Role] | None = None,
    prompts: bool = True,
) -> st.SearchStrategy[OperatorNode]:
    """Operator nodes (blank ids) whose operator has one of ``roles``.

    By default every role except ensembling: an ensembler is only valid right after a parallel
    block, which :func:`chains` arranges itself.
    """
    wanted = tuple(roles) if roles is not None else tuple(r for r in Role if r is not Role.ENSEMBLING)
    names = sorted(spec.name for spec in registry if spec.role in wanted)
    if not names:
        raise UserError(
            f"the registry has no operator with role(s) {', '.join(r.value for r in wanted)}; "
            "register one or pass other roles"
        )
    prompt_strategy = st.sampled_from(PROMPTS) if prompts else st.just("")
    return st.builds(OperatorNode, st.sampled_from(names), prompt_strategy)


def chains(
    registry: OperatorRegistry,
    max_depth: int = 2,
    *,
    max_steps: int = _MAX_INNER_STEPS,
    prompts: bool = True,
) -> st.SearchStrategy[Chain]:
    """Non-empty valid chains (blank ids) with structures nested at most ``max_depth`` deep."""
    if max_depth < 0 or max_steps < 1:
        raise UserError("chains() needs max_depth >= 0 and max_steps >= 1")
    return _ChainFactory(registry, prompts).chain(max_depth, max_steps)


def workflows(
    registry: OperatorRegistry,
    max_steps: int = 6,
    max_depth: int = 2,
    *,
    min_steps: int = 1,
    prompts: bool = True,
) -> st.SearchStrategy[Workflow]:
    """Valid workflows built through :class:`WorkflowBuilder` (ids ``node_1``.. in pre-order).

    ``max_steps`` bounds the top-level chain (an ensembler after a parallel counts as a step, so a
    sample may have one step more); nested chains have at most 3 steps.
    """
    if min_steps < 0 or max_steps < max(min_steps, 1):
        raise UserError("workflows() needs 0 <= min_steps <= max_steps and max_steps >= 1")
    factory = _ChainFactory(registry, prompts)
    groups = st.lists(factory.group(max_depth), min_size=min_steps, max_size=max_steps)
    return groups.map(lambda gs: _build(registry, _flatten(gs)))


def _build(registry: OperatorRegistry, steps: Chain) -> Workflow:
    builder = WorkflowBuilder(registry=registry)
    for step in steps:
        builder.add(step)
    return builder.workflow


def _flatten(groups: list[tuple[Step, ...]]) -> Chain:
    return tuple(step for group in groups for step in group)


def _drop_missing(pair: tuple[Parallel, OperatorNode | None]) -> tuple[Step, ...]:
    block, ensembler = pair
    return (block,) if ensembler is None else (block, ensembler)


class _ChainFactory:
    """Builds (and caches per depth) the mutually recursive strategies."""

    def __init__(self, registry: OperatorRegistry, prompts: bool) -> None:
        self.registry = registry
        self.prompts = prompts
        self.plain = operator_nodes(registry, prompts=prompts)
        has = {role: any(s.role is role for s in registry) for role in Role}
        self.checkers = operator_nodes(registry, roles=[Role.CHECKING], prompts=prompts) if has[Role.CHECKING] else None
        self.ensemblers = (
            operator_nodes(registry, roles=[Role.ENSEMBLING], prompts=prompts) if has[Role.ENSEMBLING] else None
        )
        self._groups: dict[int, st.SearchStrategy[tuple[Step, ...]]] = {}

    def chain(self, depth: int, max_steps: int = _MAX_INNER_STEPS) -> st.SearchStrategy[Chain]:
        return st.lists(self.group(depth), min_size=1, max_size=max_steps).map(_flatten)

    def group(self, depth: int) -> st.SearchStrategy[tuple[Step, ...]]:
        """One step, or a parallel block followed by an ensembler (the only place one is valid)."""
        if depth not in self._groups:
            options: list[st.SearchStrategy[tuple[Step, ...]]] = [self.plain.map(lambda n: (n,))]
            if depth > 0:
                inner = self.chain(depth - 1)
                options.append(self._parallel(inner))
                if self.checkers is not None:
                    options.append(self._conditional(inner))
                options.append(
                    st.builds(Loop, inner, st.integers(MIN_LOOP_ITERATIONS, MAX_LOOP_ITERATIONS)).map(
                        lambda loop: (loop,)
                    )
                )
            self._groups[depth] = st.one_of(options)
        return self._groups[depth]

    def _parallel(self, inner: st.SearchStrategy[Chain]) -> st.SearchStrategy[tuple[Step, ...]]:
        block = st.lists(inner, min_size=2, max_size=3).map(lambda bs: Parallel(tuple(bs)))
        if self.ensemblers is None:
            return block.map(lambda p: (p,))
        follower = st.one_of(st.none(), self.ensemblers)
        return st.tuples(block, follower).map(_drop_missing)

    def _conditional(self, inner: st.SearchStrategy[Chain]) -> st.SearchStrategy[tuple[Step, ...]]:
        assert self.checkers is not None
        on_pass = st.one_of(st.just(()), inner)
        return st.builds(Conditional, self.checkers, inner, on_pass).map(lambda c: (c,))
