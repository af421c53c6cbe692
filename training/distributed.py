"""Data parallelism for ``torchrun``: each process rolls out and trains on its share of the groups.

Every process holds the full model. A step's B task groups are split across processes (a group never
straddles two, so advantages stay local); each process divides its loss by the *global* number of
tokens (or trajectories) of the minibatch, and the gradients are summed with an all-reduce. The sum
is then exactly the gradient of one process over the concatenated batch, which the tests check on
CPU with the gloo backend. (This is what DDP does, written out so the normalisation is explicit and
peft adapters need no wrapper.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["DistContext", "init_distributed", "single_process"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    """None when not distributed."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's items (round-robin)."""
        return list(items[self.rank :: self.world_size])

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Sum floats over every rank (identity when not distributed)."""
        if not self.enabled:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def all_reduce_gradients(self, parameters: Sequence[Any]) -> None:
        """Sum every parameter's ``.grad`` over the ranks, in one flat buffer."""
        if not self.enabled:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(parameters, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def single_process() -> DistContext:
    """The context of a plain, non-distributed run."""
    return DistContext()


def init_distributed(backend: str | None = None) -> DistContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else run alone.

    The backend defaults to nccl with CUDA and gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return single_process()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext(rank=rank, world_size=world, backend=backend)
