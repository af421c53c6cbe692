"""The CWRPO reward: a diversity-constrained structure score with conditional release of the answer.

.. code-block:: text

    R       = -1 + R_div + 1[R_div >= release_threshold] * R_answer
    R_div   = min(1, w_checker*checker + w_format*format + w_min_ops*min_ops + w_structure*structure)

Each component is 0 or 1 and is read from the workflow IR through the operator registry's roles, so
a user-registered operator earns credit by its role with no other edit:

* ``checker``: the workflow contains an operator of role CHECKING (Verify, Test, Review, ...);
* ``format``: it contains an operator of role FORMATTING (Format, ...);
* ``min_ops``: it has at least ``min_operators`` operator leaves (conditional checkers included; a
  loop body counts once, as written). A plain step that repeats the step right before it in the same
  chain (``Format -> Format``) counts once: repeating an operator on its own output is padding, and
  the reference reward, which counted every occurrence, paid a policy for it (a trained director
  learned to append ``Format`` until it reached six). Repeated *conditionals* still count
  (``Verify ? Revise : done -> Verify ? Revise : done`` is two rounds of review), as do repeats with
  other steps between them. ``RewardConfig(count_repeats=True)`` restores the reference's count;
* ``structure``: it has a parallel block, a conditional, **or a loop**. The reference implementation
  matched loops with a regex the DSL never printed, so loop-only workflows could never release the
  answer term (spec 13.7); here loops earn the credit.

Range: -1 (nothing satisfied) ... 0 (full structure, wrong answer) ... +1 (full structure, correct).

Operator minimums: the reward asks for 6 operators (as the reference reward did) while the canvas's
finish rule (``FinishConstraints``) asks for 5 by default, so a 5-operator workflow may finish but
never releases the answer term (spec 13.8, 13.27). Both numbers are configurable; set
``RewardConfig(min_operators=5)`` to align the reward with the finish rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowsteer.errors import UserError
from flowsteer.operators.base import Role
from flowsteer.operators.registry import OperatorRegistry
from flowsteer.scoring import Score, ascore, score
from flowsteer.tasks import Task
from flowsteer.workflow.graph import stats
from flowsteer.workflow.ir import Chain, Conditional, Loop, OperatorNode, Parallel, Workflow

if TYPE_CHECKING:
    from flowsteer.sandbox import Sandbox

__all__ = ["RewardConfig", "RewardBreakdown", "compute_reward", "score_and_reward", "ascore_and_reward"]

# Sums of float weights (0.2 + 0.2 + 0.2 + 0.4) land a hair off 1.0; compare with this slack.
_EPS = 1e-9


@dataclass(frozen=True)
class RewardConfig:
    """Weights and thresholds of the CWRPO reward (defaults follow the paper and reference code)."""

    checker: float = 0.2
    """Weight of 'has a checking-role operator'."""
    format: float = 0.2
    """Weight of 'has a formatting-role operator'."""
    min_ops: float = 0.2
    """Weight of 'has at least ``min_operators`` operators'."""
    structure: float = 0.4
    """Weight of 'has a parallel, conditional or loop'."""
    min_operators: int = 6
    """Operator count that earns ``min_ops`` (the canvas finish rule defaults to 5, see module doc)."""
    release_threshold: float = 1.0
    """R_answer is added only when R_div reaches this value (1.0 = full structure, as in the paper)."""
    loops_count_as_structure: bool = True
    """Loops earn the structure credit. False reproduces the reference bug 13.7 (for comparisons only)."""
    count_repeats: bool = False
    """Count a plain step that repeats the one before it (``Format -> Format``) toward ``min_operators``.
    False (default) counts such a run once, so padding a workflow earns nothing; True is the reference."""
    repeat_penalty: float = 0.0
    """Subtracted from R for each such repeated step (R stays >= -1): with it, of two workflows that
    earn the same, the one without the redundant executor calls earns more. 0 (default) is the paper's
    reward; the shipped director's recipe uses 0.1."""

    def __post_init__(self) -> None:
        weights = {"checker": self.checker, "format": self.format, "min_ops": self.min_ops,
                   "structure": self.structure}
        for name, value in weights.items():
            if not 0.0 <= value <= 1.0:
                raise UserError(f"RewardConfig.{name} must be a weight in [0, 1], got {value!r}")
        if self.min_operators < 1:
            raise UserError(
                f"RewardConfig.min_operators must be >= 1, got {self.min_operators}; "
                "use 6 (the paper's reward) or 5 (to match the canvas finish rule)"
            )
        if not 0.0 < self.release_threshold <= 1.0:
            raise UserError(
                f"RewardConfig.release_threshold must be in (0, 1], got {self.release_threshold!r}; "
                "1.0 releases R_answer only for a fully diverse workflow (the paper's setting)"
            )
        if not 0.0 <= self.repeat_penalty <= 1.0:
            raise UserError(f"RewardConfig.repeat_penalty must be in [0, 1], got {self.repeat_penalty!r}; "
                            "0 turns it off, 0.1 per repeated step is the shipped director's setting")
        if sum(weights.values()) + _EPS < self.release_threshold:
            raise UserError(
                f"RewardConfig weights sum to {sum(weights.values()):.3f}, below release_threshold "
                f"{self.release_threshold}: the answer term could never be released; raise the weights "
                "or lower the threshold"
            )


@dataclass(frozen=True)
class RewardBreakdown:
    """Every component of one reward computation."""

    total: float
    """R = -1 + diversity + released * answer, in [-1, 1]."""
    diversity: float
    """R_div in [0, 1]."""
    answer: float
    """R_answer as given (the scorer's value in [0, 1]), whether released or not."""
    checker: bool
    format: bool
    min_ops: bool
    structure: bool
    released: bool
    """True when R_div reached the release threshold, so the answer term counted."""
    operator_count: int = 0
    """Operators counted toward ``min_operators`` (see ``RewardConfig.count_repeats``)."""
    repeated_steps: int = 0
    """Plain steps that repeat the step right before them (``Format -> Format`` has one)."""


def compute_reward(
    workflow: Workflow,
    answer_score: float,
    *,
    registry: OperatorRegistry | None = None,
    config: RewardConfig | None = None,
) -> RewardBreakdown:
    """The CWRPO reward of a finished workflow whose answer scored ``answer_score`` (in [0, 1])."""
    config = config or RewardConfig()
    if not 0.0 <= answer_score <= 1.0:
        raise UserError(f"answer_score must be in [0, 1] (a Score.value), got {answer_score!r}")
    summary = stats(workflow, registry)  # read from the IR through the registry's roles
    checker = summary.role_counts.get(Role.CHECKING.value, 0) > 0
    fmt = summary.role_counts.get(Role.FORMATTING.value, 0) > 0
    repeats = _count_repeats(workflow.steps)
    counted = summary.operator_count if config.count_repeats else summary.operator_count - repeats
    min_ops = counted >= config.min_operators
    structure = summary.has_parallel or summary.has_conditional or (
        summary.has_loop and config.loops_count_as_structure
    )
    raw = (config.checker * checker + config.format * fmt + config.min_ops * min_ops
           + config.structure * structure)
    diversity = min(1.0, round(raw, 9))
    released = diversity + _EPS >= config.release_threshold
    total = max(-1.0, -1.0 + diversity + (answer_score if released else 0.0) - config.repeat_penalty * repeats)
    return RewardBreakdown(
        total=round(total, 9),
        diversity=diversity,
        answer=answer_score,
        checker=checker,
        format=fmt,
        min_ops=min_ops,
        structure=structure,
        released=released,
        operator_count=counted,
        repeated_steps=repeats,
    )


def _count_repeats(chain: Chain) -> int:
    """Plain steps of ``chain`` (and of every nested chain) that repeat the step right before them."""
    repeats = 0
    previous: str | None = None
    for step in chain:
        match step:
            case OperatorNode(operator=name):
                repeats += name == previous
                previous = name
                continue
            case Parallel(branches=branches):
                repeats += sum(_count_repeats(branch) for branch in branches)
            case Conditional(on_fail=on_fail, on_pass=on_pass):
                repeats += _count_repeats(on_fail) + _count_repeats(on_pass)
            case Loop(body=body):
                repeats += _count_repeats(body)
        previous = None
    return repeats


def score_and_reward(
    workflow: Workflow,
    task: Task,
    answer: str | None,
    *,
    registry: OperatorRegistry | None = None,
    config: RewardConfig | None = None,
    sandbox: Sandbox | None = None,
) -> tuple[Score, RewardBreakdown]:
    """Score ``answer`` for ``task`` (deterministically, see :mod:`flowsteer.scoring`) and compute R."""
    result = score(task, answer, sandbox=sandbox)
    return result, compute_reward(workflow, result.value, registry=registry, config=config)


async def ascore_and_reward(
    workflow: Workflow,
    task: Task,
    answer: str | None,
    *,
    registry: OperatorRegistry | None = None,
    config: RewardConfig | None = None,
    sandbox: Sandbox | None = None,
) -> tuple[Score, RewardBreakdown]:
    """Async twin of :func:`score_and_reward` (code tasks await the sandbox)."""
    result = await ascore(task, answer, sandbox=sandbox)
    return result, compute_reward(workflow, result.value, registry=registry, config=config)
