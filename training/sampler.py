"""A seeded task sampler with a resumable cursor.

Epoch ``e`` visits the tasks in the order of a permutation seeded by ``(seed, e)``, so the cursor
``(epoch, position)`` is all a checkpoint needs to continue with exactly the same tasks.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from flowsteer.errors import UserError

__all__ = ["TaskSampler"]

T = TypeVar("T")


class TaskSampler(Generic[T]):
    """Draws tasks without replacement within an epoch, reshuffling every epoch."""

    def __init__(self, tasks: Sequence[T], *, seed: int = 0, shuffle: bool = True) -> None:
        if not tasks:
            raise UserError("no training tasks: check data.datasets / data.paths / data.limit in the config")
        self._tasks = list(tasks)
        self._seed = seed
        self._shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self._tasks)))
        if self._shuffle:
            random.Random(f"{self._seed}:{epoch}").shuffle(order)
        return order

    def next(self, n: int) -> list[T]:
        """The next ``n`` tasks (crossing into the next epoch when this one runs out)."""
        out: list[T] = []
        while len(out) < n:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            out.append(self._tasks[self._order[self.position]])
            self.position += 1
        return out

    def state(self) -> dict[str, Any]:
        """The cursor, for checkpoints."""
        return {"epoch": self.epoch, "position": self.position, "size": len(self._tasks)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved cursor."""
        if int(state.get("size", len(self._tasks))) != len(self._tasks):
            raise UserError(
                f"the checkpoint was taken with {state['size']} training tasks but {len(self._tasks)} are "
                "loaded now: resume with the same data settings"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._permutation(self.epoch)
