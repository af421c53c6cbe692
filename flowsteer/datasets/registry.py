"""The dataset registry: one name -> loader map, so the CLI, the eval harness and users share it.

A loader is a function ``(path, *, limit, split) -> list[Task]``. Register one with::

    @register_dataset("my_set", kind="qa", default_metric="f1")
    def load_my_set(path, *, limit=None, split=None):
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flowsteer.datasets._io import PathLike
from flowsteer.errors import UserError
from flowsteer.tasks import TASK_KINDS, Task

__all__ = ["DatasetLoader", "DatasetSpec", "METRICS", "register_dataset", "load_dataset", "dataset_names",
           "get_dataset"]

METRICS = ("accuracy", "f1", "em", "pass@1")
"""Metric names a dataset may declare as its default (what the paper reports for it)."""


class DatasetLoader(Protocol):
    def __call__(self, path: PathLike | None, *, limit: int | None, split: str | None) -> list[Task]: ...


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset."""

    name: str
    kind: str
    """Task kind every task of the dataset has (``math``, ``qa`` or ``code``)."""
    default_metric: str
    """The metric the paper reports for it (one of :data:`METRICS`)."""
    loader: DatasetLoader
    description: str = ""


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    kind: str,
    default_metric: str,
    description: str = "",
    replace: bool = False,
) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator registering a loader ``(path, *, limit, split) -> list[Task]`` under ``name``."""
    if kind not in TASK_KINDS:
        raise UserError(f"dataset {name!r}: kind must be one of {TASK_KINDS}, got {kind!r}")
    if default_metric not in METRICS:
        raise UserError(f"dataset {name!r}: default_metric must be one of {METRICS}, got {default_metric!r}")
    if not name or name != name.strip() or name.startswith("hf:"):
        raise UserError(f"dataset name {name!r} is invalid: use a short identifier such as 'my_set'")

    def decorate(loader: DatasetLoader) -> DatasetLoader:
        if name in _REGISTRY and not replace:
            raise UserError(f"dataset {name!r} is already registered; pass replace=True to override it")
        doc = (loader.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = DatasetSpec(name, kind, default_metric, loader, description or (doc[0] if doc else ""))
        return loader

    return decorate


def get_dataset(name: str) -> DatasetSpec:
    """The registered spec for ``name``; unknown names raise UserError listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; registered datasets: {', '.join(dataset_names())}") from None


def dataset_names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def load_dataset(
    name: str,
    path: PathLike | None = None,
    *,
    limit: int | None = None,
    split: str | None = None,
) -> list[Task]:
    """Load ``name`` from ``path`` (a file, a folder holding the usual file, or ``"hf:<repo>"``).

    ``limit`` keeps the first N tasks (after ``split`` selection). Datasets that ship with a package
    (HumanEval) or are generated (``arithmetic``, ``gsm_synthetic``) need no path.
    """
    spec = get_dataset(name)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise UserError(f"limit must be a non-negative int or None, got {limit!r}")
    tasks = spec.loader(path, limit=limit, split=split)
    return tasks if limit is None else tasks[:limit]

