"""Group-relative advantages: ``A_i = (R_i - mean_group) / (std_group + eps)``.

A group is the G episodes of one task (not, as in the reference code, different tasks from one
source: spec section 13 item 2). A group whose rewards are all equal carries no learning signal; its
advantages are exactly 0 and it is counted in ``zero_variance_groups`` so a run can see how much of
each batch is wasted.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["GroupAdvantages", "group_advantages"]


@dataclass(frozen=True)
class GroupAdvantages:
    """Advantages in input order plus per-batch statistics."""

    advantages: tuple[float, ...]
    """One advantage per reward, in the order the rewards were given."""
    groups: int
    """Number of groups."""
    zero_variance_groups: int
    """Groups whose rewards were all (numerically) equal: advantage 0, no gradient."""
    mean_group_std: float
    """Mean over groups of the reward standard deviation."""

    @property
    def zero_variance_fraction(self) -> float:
        """Share of groups without signal."""
        return self.zero_variance_groups / self.groups if self.groups else 0.0


def group_advantages(
    rewards: Sequence[float],
    group_ids: Sequence[Hashable],
    *,
    scale_std: bool = True,
    eps: float = 1e-6,
    unbiased_std: bool = False,
    zero_tol: float = 1e-8,
) -> GroupAdvantages:
    """Normalise ``rewards`` within the groups named by ``group_ids`` (same length).

    ``scale_std=False`` only subtracts the group mean. ``unbiased_std`` uses the n-1 denominator
    (TRL's choice); the default is the population std.
    """
    if len(rewards) != len(group_ids):
        raise ValueError(f"rewards ({len(rewards)}) and group_ids ({len(group_ids)}) differ in length")
    members: dict[Hashable, list[int]] = {}
    for index, gid in enumerate(group_ids):
        members.setdefault(gid, []).append(index)
    advantages = [0.0] * len(rewards)
    zero_groups = 0
    stds: list[float] = []
    for indices in members.values():
        values = [float(rewards[i]) for i in indices]
        mean = sum(values) / len(values)
        dof = len(values) - 1 if unbiased_std and len(values) > 1 else len(values)
        std = (sum((v - mean) ** 2 for v in values) / dof) ** 0.5
        stds.append(std)
        if std <= zero_tol:
            zero_groups += 1
            continue  # all advantages stay exactly 0
        for i, v in zip(indices, values, strict=True):
            advantages[i] = (v - mean) / (std + eps) if scale_std else v - mean
    return GroupAdvantages(
        advantages=tuple(advantages),
        groups=len(members),
        zero_variance_groups=zero_groups,
        mean_group_std=sum(stds) / len(stds) if stds else 0.0,
    )
