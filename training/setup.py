"""Build a trainer's parts from a :class:`CWRPOConfig`: tasks, policy, engine, executor, director."""

from __future__ import annotations

import logging
from typing import Any

from flowsteer.errors import UserError

from .config import CWRPOConfig
from .engines.hf import HFEngine
from .policy import load_policy
from .rollout import DirectorRollout, cached_executor, make_executor

__all__ = ["load_tasks", "build_components", "build_rollout", "director_config", "canvas_config"]

logger = logging.getLogger(__name__)


def load_tasks(config: CWRPOConfig) -> list[Any]:
    """Every task of every configured dataset (``data.limit`` per dataset)."""
    from flowsteer.datasets import dataset_names, load_dataset

    tasks: list[Any] = []
    for name in config.data.datasets:
        if name not in dataset_names():
            raise UserError(f"data.datasets names unknown dataset {name!r}: valid names are {dataset_names()}")
        tasks += load_dataset(name, config.data.paths.get(name), limit=config.data.limit, split=config.data.split)
    logger.info("loaded %d training tasks from %s", len(tasks), ", ".join(config.data.datasets))
    return tasks


def director_config(config: CWRPOConfig) -> Any:
    """The run's typed director settings (:attr:`CWRPOConfig.director_config`, built from its
    ``director`` section at load time): sampling as configured, no fallback."""
    return config.director_config


def canvas_config(config: CWRPOConfig) -> Any:
    """The canvas settings implied by the rollout config."""
    return director_config(config).canvas_config()


def build_components(config: CWRPOConfig) -> tuple[Any, Any, DirectorRollout, list[Any]]:
    """``(model, tokenizer, rollout, tasks)`` for :class:`~flowsteer.training.trainer.CWRPOTrainer`."""
    tasks = load_tasks(config)
    model, tokenizer = load_policy(config.model, config.lora)
    return model, tokenizer, build_rollout(config, model, tokenizer, tasks), tasks


def build_rollout(config: CWRPOConfig, model: Any, tokenizer: Any, tasks: list[Any]) -> DirectorRollout:
    """Director rollouts over ``model`` (already prepared with LoRA) through the HF engine."""
    from flowsteer.operators import default_registry

    engine: Any
    match config.rollout.engine:
        case "hf":
            engine = HFEngine(model, tokenizer, config.rollout, seed=config.seed, director=config.director_config)
        case "vllm":
            from .engines.vllm import VLLMEngine
            from .export import base_model_path

            options = {"base_model": base_model_path(config.model.name_or_path), **dict(config.rollout.engine_options)}
            engine = VLLMEngine(model, tokenizer, config.rollout, director=config.director_config, **options)
        case other:
            raise UserError(f"rollout.engine {other!r} is not available: use 'hf' or 'vllm'")
    executor = make_executor(config.rollout.executor, tasks, config.rollout.executor_options)
    if config.rollout.executor_cache and config.rollout.executor != "simulated":
        executor = cached_executor(executor, config.rollout.executor, config.rollout.executor_options,
                                   config.logging.run_dir)
    sandbox = None
    if any(t.kind == "code" for t in tasks):
        from flowsteer.sandbox import Sandbox

        sandbox = Sandbox()
    rollout = DirectorRollout(
        engine.chat_model,
        executor=executor,
        registry=default_registry(),
        director_config=director_config(config),
        canvas_config=canvas_config(config),
        reward_config=config.reward_config(),
        sandbox=sandbox,
        concurrency=config.rollout.concurrency,
        before_collect=engine.before_rollout,
        on_close=getattr(engine, "close", None),
    )
    return rollout
