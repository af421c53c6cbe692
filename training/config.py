"""CWRPO configuration: one documented dataclass per concern, loaded from YAML or TOML.

Defaults follow the paper (spec section 9): LoRA r 64 / alpha 64 / dropout 0.05 on q/k/v/o, AdamW
1e-5 with cosine decay and 10 warm-up steps, gradient clipping 1.0, PPO-clip eps 0.2, KL beta 0.005
(k3 estimator against the base model with the adapter disabled), 6 tasks x 6 episodes per step.

A file has one table per concern::

    seed: 42
    max_steps: 300
    model: {name_or_path: embedded}
    rollout: {tasks_per_step: 6, group_size: 6}
    loss: {eps_low: 0.2, eps_high: 0.2, beta: 0.005}

Unknown keys and wrong types raise :class:`~flowsteer.errors.UserError` naming the field and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowsteer.errors import UserError

__all__ = [
    "ModelConfig",
    "LoRAConfig",
    "RolloutConfig",
    "LossConfig",
    "OptimConfig",
    "DataConfig",
    "LoggingConfig",
    "WarmStartConfig",
    "CWRPOConfig",
    "AggregationMode",
    "AGGREGATION_MODES",
    "load_config",
    "parse_yaml",
    "config_from_dict",
    "config_to_dict",
]

AggregationMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
AGGREGATION_MODES: tuple[str, ...] = typing.get_args(AggregationMode)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class ModelConfig:
    """The policy (Flow-Director) model that is trained."""

    name_or_path: str = "embedded"
    """``embedded`` (the bundled SmolLM2-135M-Instruct), or a transformers model folder / hub id."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype; ``auto`` is bfloat16 on GPU and float32 on CPU."""
    device: str = "auto"
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the training forward pass."""
    attn_implementation: str | None = None
    """Passed to ``from_pretrained`` (e.g. ``sdpa``, ``flash_attention_2``); None lets transformers pick."""


@dataclass(frozen=True)
class LoRAConfig:
    """The LoRA adapter (peft) that holds every trained weight."""

    enabled: bool = True
    """Train a LoRA adapter; False trains every weight (small models only) and has no cheap reference."""
    r: int = 64
    """Adapter rank."""
    alpha: int = 64
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get an adapter."""

    def __post_init__(self) -> None:
        _check(self.r > 0, f"lora.r must be a positive integer, got {self.r}")
        _check(0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout}")
        _check(bool(self.target_modules), "lora.target_modules is empty: name at least one module, e.g. q_proj")


LEGACY_DIRECTOR_FIELDS: dict[str, str] = {
    "temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_action_tokens",
    "max_turns": "max_turns", "context_budget": "context_budget", "constrain": "constrain",
    "constrain_options": "constrain_options", "director_preset": "preset",
}
"""``rollout`` field -> the ``director`` key it is a deprecated spelling of (``director_options``
holds ``director`` keys already)."""

DIRECTOR_SECTION_KEYS = ("preset", "constrain", "constrain_options")
"""Keys of the ``director`` section besides the ``DirectorConfig`` fields."""


def build_director(section: Mapping[str, Any]) -> Any:
    """The typed :class:`~flowsteer.director.DirectorConfig` of a ``director`` section.

    ``preset`` (``default`` or ``small_model``: what ``flowsteer run/eval`` serve a local director
    with; train with the prompts you will serve), ``constrain`` (the action grammar) and, for the
    default preset, ``constrain_options`` (``GrammarOptions`` fields); every other key is a
    ``DirectorConfig`` field set on top of the preset. Errors name ``director.<key>``."""
    from flowsteer.director import DirectorConfig

    fields = {f.name for f in dataclasses.fields(DirectorConfig)} - {"constraint"}
    for key in section:
        if key not in fields and key not in DIRECTOR_SECTION_KEYS:
            close = difflib.get_close_matches(key, [*fields, *DIRECTOR_SECTION_KEYS], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown config field 'director.{key}': {hint}valid fields are "
                            f"{sorted([*DIRECTOR_SECTION_KEYS, *fields])}")
    preset = section.get("preset", "default")
    _check(preset in ("default", "small_model"),
           f"director.preset must be 'default' or 'small_model', got {preset!r}")
    constrain = section.get("constrain", False)
    _check(isinstance(constrain, bool), f"director.constrain must be true or false, got {constrain!r}")
    own = {k: v for k, v in section.items() if k in fields}
    try:
        if preset == "small_model":
            if section.get("constrain_options"):
                raise UserError("director.constrain_options cannot be combined with director.preset small_model "
                                "(the preset brings its own action grammar); remove one of them")
            base = DirectorConfig.small_model(constrained=constrain)
            for key in ("context_budget", "max_action_tokens"):  # the preset's prompts and grammar depend on them
                if key in own and own[key] != getattr(base, key):
                    raise UserError(f"director.{key} is {own[key]} but director.preset small_model uses "
                                    f"{getattr(base, key)}: set director.{key}: {getattr(base, key)} or leave it out")
            # the preset serves greedily; a rollout samples (the paper's 0.6 unless the config says)
            own.setdefault("temperature", DirectorConfig.temperature)
            director = dataclasses.replace(base, **own)
        else:
            constraint = None
            if constrain:
                from flowsteer.constrain.constraint import action_constraint

                budget = own.get("max_action_tokens", DirectorConfig.max_action_tokens)
                # actions end within the turn's token budget
                constraint = action_constraint(**{"max_new_tokens": budget, **dict(section.get("constrain_options") or {})})
            director = DirectorConfig(constraint=constraint, **own)
    except TypeError as exc:
        raise UserError(f"config section 'director': {exc}; use DirectorConfig field names") from None
    _check(director.temperature > 0, f"director.temperature must be > 0 to train (it samples), got {director.temperature}")
    return director


@dataclass(frozen=True)
class RolloutConfig:
    """How episodes are sampled each step (B tasks x G episodes per task)."""

    tasks_per_step: int = 6
    """B: distinct tasks drawn per step."""
    group_size: int = 6
    """G: episodes per task; advantages are normalised within each group."""
    engine: Literal["hf", "vllm"] = "hf"
    """Rollout engine. ``hf`` samples from the very model being trained (CPU or GPU); ``vllm`` samples
    from a vLLM server that gets the adapter pushed (and verified) before every step."""
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the engine (vllm: ``base_url`` of a running server, or ``server_config``;
    ``adapter_name``, ``tolerance``, ...). The base model defaults to ``model.name_or_path``."""
    concurrency: int = 36
    """Episodes run concurrently (the engine batches their generations)."""
    # Deprecated spellings of ``director`` settings (one source: the ``director`` section; a value
    # set here is moved there at load time, with a DeprecationWarning, and read back as None).
    temperature: float | None = None
    """Deprecated: ``director.temperature``."""
    top_p: float | None = None
    """Deprecated: ``director.top_p``."""
    max_new_tokens: int | None = None
    """Deprecated: ``director.max_action_tokens``."""
    max_turns: int | None = None
    """Deprecated: ``director.max_turns``."""
    context_budget: int | None = None
    """Deprecated: ``director.context_budget``."""
    constrain: bool | None = None
    """Deprecated: ``director.constrain``."""
    constrain_options: Mapping[str, Any] | None = None
    """Deprecated: ``director.constrain_options``."""
    director_preset: Literal["default", "small_model"] | None = None
    """Deprecated: ``director.preset``."""
    director_options: Mapping[str, Any] | None = None
    """Deprecated: the ``director`` section itself (its keys are ``DirectorConfig`` fields)."""
    executor: str = "simulated"
    """Executor model spec: ``simulated`` (the shipped SimulatedExecutor) or a ``load_chat_model`` spec."""
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the executor (e.g. ``{skill: 0.6}`` for the simulated one)."""
    executor_cache: bool = True
    """Cache executor calls for the whole run in ``<run_dir>/executor-calls.sqlite`` (the warm-start
    search, its demonstrations and every rollout share it). With a greedy executor the same node on
    the same task is paid for once; a resumed run keeps what it already paid for."""

    def __post_init__(self) -> None:
        _check(self.tasks_per_step > 0, f"rollout.tasks_per_step must be >= 1, got {self.tasks_per_step}")
        _check(self.group_size > 1, f"rollout.group_size must be >= 2 (a group needs a baseline), got {self.group_size}")

    def sampling_director(self) -> Any:
        """The typed director settings of a rollout config used on its own (an engine built without
        a :class:`CWRPOConfig`): its deprecated fields on top of the defaults."""
        return build_director(self.legacy_director())

    def legacy_director(self) -> dict[str, Any]:
        """The deprecated director settings set here, as ``director`` section keys."""
        out: dict[str, Any] = dict(self.director_options or {})
        for name, key in LEGACY_DIRECTOR_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = dict(value) if isinstance(value, Mapping) else value
        return out


@dataclass(frozen=True)
class LossConfig:
    """The CWRPO objective: PPO-clip surrogate + k3 KL to the reference, on policy tokens only."""

    name: str = "cwrpo"
    """Registered policy loss (see ``flowsteer.training.losses.policy_loss_names()``)."""
    eps_low: float = 0.2
    """Lower clip: the ratio is clipped below at 1 - eps_low."""
    eps_high: float = 0.2
    """Upper clip: the ratio is clipped above at 1 + eps_high."""
    beta: float = 0.005
    """KL coefficient (k3 estimator); 0 skips the reference forward pass."""
    aggregation: AggregationMode = "token-mean"
    """How per-token losses become one number: over all tokens, or per trajectory then over trajectories."""
    scale_std: bool = True
    """Divide advantages by the group standard deviation (False: mean-centred only, Dr. GRPO style)."""
    adv_eps: float = 1e-6
    """delta in (R - mean) / (std + delta)."""
    ppo_epochs: int = 1
    """Passes over each step's episodes."""
    num_minibatches: int = 1
    """Optimizer updates per epoch (episodes are split by trajectory)."""
    mask_forced_tokens: bool = True
    """Leave out of the loss the tokens sampled with probability 1 (forced by a grammar constraint):
    they carry no decision, and pushing on them only drifts the unconstrained logits."""
    replay_constraint: bool = True
    """Recompute the log-probs of grammar-constrained turns under the grammar they were sampled
    with (masked and renormalised), for the behaviour, current and reference policies alike. False:
    plain model log-probs (then keep ``mask_forced_tokens`` on)."""
    old_logprobs: Literal["recompute", "engine"] = "recompute"
    """Behaviour log-probs: recomputed by the trainer before the update (robust to engine numerics,
    top-p and grammar constraints) or taken from the engine's sampled-token log-probs."""

    def __post_init__(self) -> None:
        _check(self.aggregation in AGGREGATION_MODES,
               f"loss.aggregation must be one of {AGGREGATION_MODES}, got {self.aggregation!r}")
        _check(0 <= self.eps_low < 1 and self.eps_high >= 0,
               f"loss.eps_low must be in [0, 1) and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        _check(self.beta >= 0, f"loss.beta must be >= 0, got {self.beta}")
        _check(self.ppo_epochs >= 1 and self.num_minibatches >= 1,
               "loss.ppo_epochs and loss.num_minibatches must be >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, gradient clipping and accumulation."""

    lr: float = 1e-5
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 10
    """Optimizer updates of linear warm-up."""
    min_lr_ratio: float = 0.0
    """Cosine floor as a fraction of ``lr``."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward; a minibatch larger than this accumulates gradients."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.micro_batch_size >= 1, f"optim.micro_batch_size must be >= 1, got {self.micro_batch_size}")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass(frozen=True)
class DataConfig:
    """Which tasks the director trains on."""

    datasets: tuple[str, ...] = ("gsm8k",)
    """Names from ``flowsteer.datasets.dataset_names()`` (procedural offline sets included)."""
    paths: Mapping[str, str] = field(default_factory=dict)
    """Optional dataset name -> local file, for loaders that read a user-given file."""
    limit: int | None = None
    """Tasks per dataset (None: all)."""
    split: str | None = None
    """Dataset split, when the loader has several."""
    shuffle: bool = True
    """Visit tasks in a seeded random order (reshuffled every epoch)."""
    custom_operators: tuple[str, ...] = ()
    """Python modules imported before training; they register custom operators that the director's
    prompts, the canvas and the reward then use with no other change."""

    def __post_init__(self) -> None:
        _check(bool(self.datasets), "data.datasets is empty: name at least one dataset, e.g. [gsm8k]")


@dataclass(frozen=True)
class WarmStartConfig:
    """The supervised warm start that runs before CWRPO (``flowsteer.training.warmstart``).

    1. *Search*: every candidate workflow runs on ``search_tasks`` training tasks of each family
       (``Task.source``) with the configured executor; the best per family (highest mean reward
       among workflows that release the answer term) is kept, and among ties the skeleton the
       families share (``shared_structure``).
    2. *Demonstrations*: the director replays the winner as canvas turns on ``demo_tasks`` training
       tasks per family, decoded through the real action grammar (so the tokens are exactly those
       the constrained director would sample).
    3. *Supervised update*: ``epochs`` passes of constrained log-likelihood on those turns.

    Each stage's output is saved in ``<run_dir>/warmstart/`` and reused by ``--resume``.
    """

    enabled: bool = False
    """Run the warm start before the first CWRPO step."""
    candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Family or task kind -> candidate workflows (DSL); empty: ``flowsteer.evaluation.search.DEFAULT_CANDIDATES``."""
    search_tasks: int = 6
    """Training tasks per family the search runs every candidate on."""
    search_concurrency: int = 24
    """Candidate runs at once in the search. Runs on one task share their first calls (the call
    cache answers a request already in flight once), so it takes many concurrent runs to keep a
    local executor's batches full."""
    shared_structure: bool = True
    """Among a family's candidates that tie (within ``tie_tolerance`` of its best mean reward),
    teach the one whose skeleton (checkers abstracted) the most families share, so the director
    learns one action sequence and, per task kind, which checker to put in it
    (:meth:`flowsteer.evaluation.search.SearchResult.choose`). ``false``: each family's own best."""
    tie_tolerance: float = 0.0
    """How far below a family's best mean reward a candidate still counts as tied (0: exact ties)."""
    demo_tasks: int = 12
    """Training tasks per family replayed as demonstrations."""
    epochs: int = 3
    """Passes over the demonstrations."""
    lr: float = 2.0e-4
    """Learning rate of the supervised update (its own AdamW, constant)."""
    micro_batch_size: int = 4
    """Demonstration episodes per optimizer step."""

    def __post_init__(self) -> None:
        _check(self.search_tasks >= 1 and self.demo_tasks >= 1,
               "warmstart.search_tasks and warmstart.demo_tasks must be >= 1")
        _check(self.epochs >= 1, f"warmstart.epochs must be >= 1, got {self.epochs}")
        _check(self.search_concurrency >= 1, "warmstart.search_concurrency must be >= 1")
        _check(self.tie_tolerance >= 0, f"warmstart.tie_tolerance must be >= 0, got {self.tie_tolerance}")
        _check(self.lr > 0, f"warmstart.lr must be > 0, got {self.lr}")
        _check(self.micro_batch_size >= 1, "warmstart.micro_batch_size must be >= 1")


@dataclass(frozen=True)
class LoggingConfig:
    """Where the run writes and how often."""

    run_dir: str = "runs/cwrpo"
    """Metrics (``metrics.jsonl``), checkpoints and the final adapter go here."""
    save_every: int = 10
    """Checkpoint every N steps (0: only at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk (older ones are deleted)."""
    progress: bool = True
    """Show a rich progress bar."""
    tensorboard: bool = False
    """Also log scalars to TensorBoard (needs the ``tensorboard`` package)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs ``wandb``)."""
    wandb_project: str = "flowsteer"
    """W&B project name."""


@dataclass(frozen=True)
class CWRPOConfig:
    """Everything a CWRPO run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    director: Mapping[str, Any] = field(default_factory=dict)
    """The director's settings, the one place they are set: ``preset``, ``constrain``,
    ``constrain_options`` and any ``DirectorConfig`` field (temperature, top_p, max_turns,
    context_budget, max_action_tokens, ...; see :func:`build_director`). The sampler, the canvas
    limits and the trainer's log-prob temperature all read :attr:`director_config`."""
    reward: Mapping[str, Any] = field(default_factory=dict)
    """Overrides for ``flowsteer.reward.RewardConfig`` (checked against its fields at load time)."""
    seed: int = 42
    """Seeds python, numpy and torch."""
    max_steps: int = 300
    """Training steps (one step = B x G episodes and the updates on them)."""

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        section = dict(self.director)
        legacy = self.rollout.legacy_director()
        if legacy:  # the deprecated rollout spellings move into the director section
            for key, value in legacy.items():
                if key in section and section[key] != value:
                    raise UserError(f"director.{key} is {section[key]!r} but the deprecated rollout setting "
                                    f"gives {value!r}: keep director.{key} only")
                section[key] = value
            names = [f"rollout.{n}" for n in (*LEGACY_DIRECTOR_FIELDS, "director_options")
                     if getattr(self.rollout, n) is not None]
            moved = ", ".join(f"{k}: {v!r}" for k, v in legacy.items())
            warnings.warn(f"{', '.join(names)} are director settings: write them in the 'director' section "
                          f"instead ({{{moved}}})", DeprecationWarning, stacklevel=3)
            cleared: dict[str, Any] = dict.fromkeys((*LEGACY_DIRECTOR_FIELDS, "director_options"))
            object.__setattr__(self, "rollout", dataclasses.replace(self.rollout, **cleared))
        object.__setattr__(self, "director", section)
        object.__setattr__(self, "_director", build_director(section))

    @property
    def director_config(self) -> Any:
        """The typed :class:`~flowsteer.director.DirectorConfig` the run's director plays with."""
        return self._director  # type: ignore[attr-defined]

    def reward_config(self) -> Any:
        """The ``flowsteer.reward.RewardConfig`` with this config's overrides applied."""
        from flowsteer.reward import RewardConfig

        return _build(RewardConfig, dict(self.reward), "reward")

    @property
    def optimizer_updates(self) -> int:
        """Total optimizer updates over the run (for the learning-rate schedule)."""
        return self.max_steps * self.loss.ppo_epochs * self.loss.num_minibatches


# ---- loading -------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> CWRPOConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into a validated :class:`CWRPOConfig`.

    ``overrides`` maps dotted names to values (``{"optim.lr": 1e-4}``) applied after the file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist: pass --config PATH to a YAML or TOML file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"config file {str(path)!r}: TOML syntax error {_toml_where(exc)}: fix the file "
                            "(strings need quotes, every key needs a value)") from None
    elif path.suffix in (".yaml", ".yml"):
        data = parse_yaml(text, f"config file {str(path)!r}") or {}
    else:
        raise UserError(f"config file {path.name!r}: use a .yaml, .yml or .toml file")
    if not isinstance(data, dict):
        raise UserError(f"config file {path.name!r} must contain a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(data)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text``; a syntax error becomes a :class:`UserError` naming ``source``, line and column."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} started at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        raise UserError(f"{source}: YAML syntax error{where}: {exc.problem}{context}; fix the YAML "
                        "(indent with spaces, not tabs; close every [ and {; quote values containing ': ')") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: YAML syntax error: {exc}; fix the YAML") from None


def _toml_where(exc: tomllib.TOMLDecodeError) -> str:
    """'at line L, column C: reason' for a TOML error (Python 3.11 keeps the position only in the message)."""
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match is None:
        return f"({message})"
    reason = message[:match.start()].strip()
    return f"at line {match.group(1)}, column {match.group(2)} ({reason})"


def config_from_dict(data: Mapping[str, Any]) -> CWRPOConfig:
    """Build a :class:`CWRPOConfig` from plain data, validating names and types."""
    config = _build(CWRPOConfig, dict(data), "")
    try:
        config.reward_config()
    except ImportError:  # the reward module is optional at config time; it is checked again at train time
        pass
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-data form of a config (for ``config.yaml`` in the run folder)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(config, RolloutConfig) and value is None and (
                f.name in LEGACY_DIRECTOR_FIELDS or f.name == "director_options"):
            continue  # deprecated spellings, moved into the director section
        if dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, Mapping):
            out[f.name] = dict(value)
        else:
            out[f.name] = value
    return out


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"unknown config field {name!r}: {hint}valid fields here are {sorted(fields)}")
        kwargs[key] = _coerce(hints[key], value, name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"config section {where or 'top level'!r}: {exc}") from exc


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise UserError(f"config field {name!r} must be a table/mapping of its fields, got {value!r}")
        return _build(typing.cast(type, hint), dict(value), name)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, name)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"config field {name!r}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"config field {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise UserError(f"config field {name!r} must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is not None and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise UserError(f"config field {name!r} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"config field {name!r} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config field {name!r} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads "1e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"config field {name!r} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"config field {name!r} must be a string, got {value!r}")
        return value
    return value
