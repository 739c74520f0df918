"""`gaea serve`: start an OpenAI-compatible model server and keep it running until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys

from gaea.commands.parsing import CommandParser, command, given, refuse_inapplicable
from gaea.errors import ConfigError
from gaea.models.serving import (
    DEFAULT_IMAGES_PER_PROMPT,
    DEFAULT_STARTUP_TIMEOUT_S,
    ENGINES,
    ServerProcess,
    build_transformers_command,
    build_vllm_command,
    choose_engine,
    health_path,
    parse_adapter,
)


def configure(parser: CommandParser) -> None:
    command(
        parser, run,
        description="Start an OpenAI-compatible server for a vision-language model: vLLM where it is installed "
        "(GPU; LoRA adapters, tensor parallelism), `transformers serve` elsewhere. Stops on Ctrl-C.",
        examples=["gaea serve --model Qwen/Qwen2.5-VL-7B-Instruct --adapter gaea-geo=runs/city/final"],
    )
    parser.add_argument("--model", required=True, help="hub id or local folder of the base model")
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=PATH",
        help="a LoRA adapter folder served as model NAME (repeatable; vLLM only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="server engine (default: %(default)s)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs per model copy (vLLM)")
    parser.add_argument("--max-model-len", type=int, default=None, help="context length (vLLM; default 32768)")
    parser.add_argument(
        "--images-per-prompt", type=int, default=DEFAULT_IMAGES_PER_PROMPT, help="most images per request (vLLM)"
    )
    parser.add_argument("--served-model", default=None, help="name clients use for the base model (vLLM)")
    parser.add_argument(
        "--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT_S, help="seconds to wait for the server"
    )


def server_for(args: argparse.Namespace) -> tuple[str, ServerProcess]:
    """The engine chosen and the (not yet started) server process that `args` describe."""
    engine = choose_engine(args.engine)
    adapters = [parse_adapter(spec) for spec in args.adapter]
    if engine == "vllm":
        command = build_vllm_command(
            args.model, adapters=adapters, host=args.host, port=args.port,
            tensor_parallel_size=args.tensor_parallel_size, max_model_len=args.max_model_len,
            images_per_prompt=args.images_per_prompt, served_model_name=args.served_model,
        )
    else:
        if adapters:
            raise ConfigError(
                "`transformers serve` cannot serve LoRA adapters: install vLLM (pip install 'gaea-geolocation[serve]') "
                "and use --engine vllm, or merge the adapter into the model first"
            )
        refuse_inapplicable(
            given(args, "tensor_parallel_size", "max_model_len", "images_per_prompt", "served_model"),
            "to vLLM only", "`transformers serve` would ignore it: install vLLM (pip install "
            "'gaea-geolocation[serve]') or leave it out",
        )
        command = build_transformers_command(args.model, host=args.host, port=args.port)
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    return engine, ServerProcess(command, f"http://{url_host}:{args.port}", health_path(engine))


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    engine, server = server_for(args)
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.start()
        print(f"starting {engine} for {args.model} (log: {server.log_path}) ...", flush=True)
        print(f"command: {shlex.join(server.command)}", flush=True)
        server.wait_until_ready(timeout_s=args.startup_timeout)
        print(f"ready: {server.base_url}/v1  models: {', '.join(server.served_models())}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        code = server.process.wait()
        print(f"gaea serve: the server exited with code {code}; its last lines:\n{server.log_tail()}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        print("stopping the server ...", flush=True)
        server.stop()
        print("stopped", flush=True)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous_handler)
