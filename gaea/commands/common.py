"""Command-line options shared by every command that talks to a model (ask, locate, ui, eval).

Usage in a command module::

    parser = argparse.ArgumentParser(prog="gaea locate")
    add_backend_arguments(parser)          # --model/--adapter/--backend/--base-url/... and generation options
    args = parser.parse_args(argv)
    backend = backend_from_args(args)      # a Backend, in-process or over HTTP
    params = params_from_args(args)        # GenerationParams

The backend is chosen as: ``--backend`` when given, else ``openai`` when ``--base-url`` is given, else
``transformers`` (the model runs in this process).
"""

from __future__ import annotations

import argparse

from gaea.commands.parsing import given, refuse_inapplicable
from gaea.credentials import MODEL_KEY_ENV, key_option_help
from gaea.errors import ConfigError
from gaea.models.backends import Backend, backend_names, load_backend
from gaea.settings import get_settings
from gaea.types import GenerationParams


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose and configure a model backend, and the generation options."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help=f"hub id or local folder of the vision-language model (default: {get_settings().model}, "
        "or $GAEA_MODEL); with --base-url, the served model name",
    )
    group.add_argument("--adapter", help="LoRA adapter (folder or hub id) applied on top of --model")
    group.add_argument(
        "--backend",
        choices=backend_names(),
        help="transformers: run the model in this process; openai: ask an OpenAI-compatible server "
        "(default: openai when --base-url is given, else transformers)",
    )
    group.add_argument("--base-url", action="append", metavar="URL",
                       help="API root of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; given "
                            "several times, replicas of one model: each request goes to the least busy")
    group.add_argument("--served-model", help="model name on the server (default: the first one it lists)")
    group.add_argument("--api-key", metavar="KEY", help=key_option_help("the model server", MODEL_KEY_ENV))
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="longest silence of the server: to connect, to start answering, between two pieces "
        f"(default: {get_settings().http_timeout_s:g}, or $GAEA_HTTP_TIMEOUT)",
    )
    group.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="most seconds one answer of the server may take, retries included "
        f"(default: {get_settings().answer_deadline_s:g}, or $GAEA_ANSWER_DEADLINE)",
    )
    group.add_argument("--device", help="cuda, cpu, cuda:1, ... (default: cuda when available)")
    group.add_argument("--load-in-4bit", action="store_true", help="quantize the model to 4 bits (bitsandbytes)")
    add_generation_arguments(parser)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --max-new-tokens, --temperature, --top-p and --seed (defaults from GenerationParams)."""
    defaults = GenerationParams()
    group = parser.add_argument_group("generation")
    group.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        metavar="N",
        help=f"longest answer in tokens (default: {defaults.max_new_tokens})",
    )
    group.add_argument(
        "--temperature",
        type=float,
        default=defaults.temperature,
        help=f"sampling temperature; 0 is greedy (default: {defaults.temperature})",
    )
    group.add_argument(
        "--top-p", type=float, default=defaults.top_p, help=f"nucleus sampling mass (default: {defaults.top_p})"
    )
    group.add_argument("--seed", type=int, help="random seed, for reproducible sampling")


def params_from_args(args: argparse.Namespace) -> GenerationParams:
    """GenerationParams from the options added by `add_generation_arguments`.

    Raises
    ------
    ConfigError
        When a value is out of range.
    """
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be 0 (greedy) or more, not {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], not {args.top_p}")
    return GenerationParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )


def backend_name_from_args(args: argparse.Namespace) -> str:
    """Which backend the options ask for, checking that they do not contradict each other."""
    name = args.backend or ("openai" if args.base_url else "transformers")
    if name == "openai":
        if not args.base_url:
            raise ConfigError("--backend openai needs --base-url, e.g. --base-url http://127.0.0.1:8000/v1")
        if args.adapter:
            raise ConfigError(
                "--adapter applies to the transformers backend; a server serves an adapter under its own "
                "model name: pass that name with --served-model"
            )
        if args.load_in_4bit:
            raise ConfigError("--load-in-4bit applies to the transformers backend; quantize on the server instead")
        if args.device:
            raise ConfigError("--device applies to the transformers backend; the server places the model itself")
    else:
        refuse_inapplicable(given(args, "base_url", "served_model", "api_key", "timeout"),
                            "to the openai backend (a server at --base-url), not to --backend transformers")
    return name


def backend_from_args(args: argparse.Namespace) -> Backend:
    """Build the backend the options describe (this loads the model, or contacts the server).

    Raises
    ------
    ConfigError
        When the options contradict each other.
    BackendError
        When the model cannot be loaded or the server cannot be reached.
    """
    name = backend_name_from_args(args)
    if name == "openai":
        servers = [
            load_backend("openai", base_url=url, model=args.served_model or args.model, api_key=args.api_key,
                         timeout_s=args.timeout, deadline_s=args.deadline)
            for url in dict.fromkeys(args.base_url)  # a URL given twice is one server
        ]
        if len(servers) == 1:
            return servers[0]
        from gaea.models.backends.replicas import Replicas

        return Replicas(servers)
    return load_backend(
        "transformers",
        model=args.model or get_settings().model,
        adapter=args.adapter,
        device=args.device,
        load_in_4bit=args.load_in_4bit,
    )


def model_name_from_args(args: argparse.Namespace) -> str:
    """The name of the model the options describe, as runs record it, without loading an in-process model
    (a server is asked which model it serves)."""
    if backend_name_from_args(args) == "openai":
        return backend_from_args(args).name
    from gaea.models.backends.transformers_backend import model_name

    return model_name(args.model or get_settings().model, args.adapter)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --scheduler and --workers: where the parts of a run are computed (see `gaea.distributed`)."""
    group = parser.add_argument_group("cluster (Dask)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786: its workers do the work, this "
                            "process writes the results")
    group.add_argument("--workers", type=int, metavar="N",
                       help="start a Dask cluster of N worker processes on this machine (127.0.0.1) for the run "
                            "(default: everything in this process)")
