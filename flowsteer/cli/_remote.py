"""What the CLI commands do alike for served models: the director's settings.

* the director's :class:`~flowsteer.director.DirectorConfig`: the small-model preset for local
  directors (and for served ones with ``--small-model``), and the action grammar for local
  directors and for directors served by vLLM (sent as ``structured_outputs``) unless turned off.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

__all__ = ["add_remote_arguments", "director_config"]

logger = logging.getLogger(__name__)

_LOCAL = ("embedded", "hf")


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--small-model``."""
    parser.add_argument("--small-model", action="store_true",
                        help="use the small-model director settings (short turns, compact prompt, 2K context) "
                             "for a served director too, e.g. SmolLM2 behind vLLM (local directors always do)")


def director_config(spec: str, model: Any, constrain: bool | None, *, small_model: bool | None = None,
                    **overrides: Any) -> Any:
    """The director's config for the model ``spec`` names.

    ``small_model`` None: the small-model preset for local directors only.

    ``constrain`` None (the default) means: the action grammar for local directors and for
    ``openai:`` directors whose server is vLLM (asked once, see
    :func:`flowsteer.backends.served_by_vllm`); True/False force it on or off. The grammar only
    reaches models that can take it (a tokenizer, or an OpenAI-compatible client).
    """
    from flowsteer.backends import parse_spec, served_by_vllm
    from flowsteer.director import DirectorConfig

    scheme = parse_spec(spec)[0]
    if constrain is None:
        constrain = scheme in _LOCAL or (scheme == "openai" and served_by_vllm(model))
        if scheme == "openai":
            logger.info("director %s: action grammar %s", spec, "on (vLLM server)" if constrain else "off")
    if scheme in _LOCAL if small_model is None else small_model:
        return DirectorConfig.small_model(constrained=constrain, **overrides)
    config = DirectorConfig(**overrides)
    if constrain:
        from flowsteer.constrain import action_constraint

        config = dataclasses.replace(config, constraint=action_constraint(max_new_tokens=config.max_action_tokens))
    return config
