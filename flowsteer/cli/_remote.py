"""What the CLI commands do alike for served models: bounded retries and the director's settings.

* ``openai:`` models (director and executor) are wrapped with :func:`flowsteer.models.retry.with_retries`:
  :data:`REMOTE_ATTEMPTS` tries per call, each cut off after ``--call-timeout`` seconds, so a
  dropped request or a hung server costs a bounded wait instead of the run. Local models are not
  wrapped (a local call cannot be lost in transit).
* the director's :class:`~flowsteer.director.DirectorConfig`: the small-model preset for local
  directors (and for served ones with ``--small-model``), and the action grammar for local
  directors and for directors served by vLLM (sent as ``structured_outputs``) unless turned off.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

__all__ = ["REMOTE_ATTEMPTS", "DEFAULT_CALL_TIMEOUT", "add_remote_arguments", "with_remote_retries",
           "director_config"]

logger = logging.getLogger(__name__)

REMOTE_ATTEMPTS = 3
"""Tries per call to an ``openai:`` model."""
DEFAULT_CALL_TIMEOUT = 120.0
"""Seconds one try may take by default."""

_LOCAL = ("embedded", "hf")


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--call-timeout`` and ``--small-model``."""
    parser.add_argument("--call-timeout", type=float, default=DEFAULT_CALL_TIMEOUT, metavar="SECONDS",
                        help=f"seconds one call to an openai: model may take before it is retried "
                             f"({REMOTE_ATTEMPTS} tries per call; default {DEFAULT_CALL_TIMEOUT:g})")
    parser.add_argument("--small-model", action="store_true",
                        help="use the small-model director settings (short turns, compact prompt, 2K context) "
                             "for a served director too, e.g. SmolLM2 behind vLLM (local directors always do)")


def with_remote_retries(model: Any, spec: str | None, args: argparse.Namespace) -> Any:
    """``model`` wrapped with bounded retries when ``spec`` names a served (``openai:``) model."""
    from flowsteer.errors import UserError
    from flowsteer.models.retry import with_retries
    from flowsteer.models.specs import parse_spec

    if model is None or spec is None or parse_spec(spec)[0] != "openai":
        return model
    timeout = getattr(args, "call_timeout", DEFAULT_CALL_TIMEOUT)
    if timeout is None or timeout <= 0:
        raise UserError(f"--call-timeout must be > 0 seconds, got {timeout}")
    return with_retries(model, attempts=REMOTE_ATTEMPTS, timeout=timeout)


def director_config(spec: str, model: Any, constrain: bool | None, *, small_model: bool | None = None,
                    **overrides: Any) -> Any:
    """The director's config for the model ``spec`` names.

    ``small_model`` None: the small-model preset for local directors only.

    ``constrain`` None (the default) means: the action grammar for local directors and for
    ``openai:`` directors whose server is vLLM (asked once, see
    :func:`flowsteer.models.specs.served_by_vllm`); True/False force it on or off. The grammar only
    reaches models that can take it (a tokenizer, or an OpenAI-compatible client).
    """
    from flowsteer.director import DirectorConfig
    from flowsteer.models.specs import parse_spec, served_by_vllm

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
