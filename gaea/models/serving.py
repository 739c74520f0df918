"""Starting an OpenAI-compatible model server: `vllm serve` on GPU machines, `transformers serve` elsewhere.

The command lines are built by pure functions (`build_vllm_command`, `build_transformers_command`) so that
every flag can be tested without a GPU; `ServerProcess` runs one as a child in its own process group,
waits for its health check and stops the whole group cleanly. `loopback_transformers_server` is the
whole round trip on 127.0.0.1, offline (tests, benchmarks and demos on local models).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gaea.errors import BackendError, BadInputError, ConfigError

log = logging.getLogger(__name__)

#: Ranks `vllm serve --max-lora-rank` accepts (vLLM's `MaxLoRARanks`); an adapter's rank is rounded up to one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: Context length asked of vLLM when the model's own limit is unknown: room for a few photos
#: (Qwen2.5-VL spends up to ~1,300 tokens on a 1-megapixel image) and a long conversation, without
#: reserving KV cache for the 128k positions the model supports.
DEFAULT_MAX_MODEL_LEN = 32768
#: Images one request may carry (a conversation keeps its photo, and a user may add a few more).
DEFAULT_IMAGES_PER_PROMPT = 4
#: Seconds given to a server to answer its health check; loading a 7B model from disk takes minutes.
DEFAULT_STARTUP_TIMEOUT_S = 900.0
#: Seconds between SIGTERM to the server's process group and SIGKILL.
DEFAULT_GRACE_S = 20.0
#: How many of the server's last log lines an error message quotes.
LOG_TAIL_LINES = 30

ENGINES = ("auto", "vllm", "transformers")
LOOPBACK = "127.0.0.1"
#: What a server on local files needs in its environment to never reach for the hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter served under its own model name."""

    name: str
    path: Path
    rank: int


def lora_rank(path: str | Path) -> int:
    """The rank `r` of the PEFT LoRA adapter saved in `path` (read from its adapter_config.json).

    Raises
    ------
    BadInputError
        When the folder has no readable adapter_config.json or it has no positive integer `r`.
    """
    config_path = Path(path) / "adapter_config.json"
    if not config_path.is_file():
        raise BadInputError(f"{path}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BadInputError(f"{config_path}: unreadable adapter config ({error})") from error
    rank = config.get("r") if isinstance(config, dict) else None
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise BadInputError(f"{config_path}: 'r' (the LoRA rank) should be a positive integer, got {rank!r}")
    return rank


def parse_adapter(spec: str) -> Adapter:
    """An `--adapter NAME=PATH` argument as an Adapter (its rank read from the folder).

    Raises
    ------
    BadInputError
        When the argument is not NAME=PATH or PATH is not a LoRA adapter folder.
    """
    name, sep, path = spec.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not name or not path:
        raise BadInputError(f"--adapter {spec!r}: expected NAME=PATH, e.g. gaea-lora=runs/lora/final")
    if any(char.isspace() for char in name):
        raise BadInputError(f"--adapter {spec!r}: the name {name!r} should have no spaces (it becomes a model name)")
    return Adapter(name=name, path=Path(path).expanduser().resolve(), rank=lora_rank(path))


def vllm_max_lora_rank(adapters: list[Adapter] | tuple[Adapter, ...]) -> int:
    """The smallest rank vLLM accepts that fits every adapter."""
    largest = max(adapter.rank for adapter in adapters)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= largest:
            return allowed
    raise ConfigError(f"LoRA rank {largest} is above {VLLM_LORA_RANKS[-1]}, the largest vLLM serves")


def default_max_model_len(model: str | Path) -> int:
    """DEFAULT_MAX_MODEL_LEN, or less when a local model's config says it supports fewer positions."""
    config_path = Path(model) / "config.json"
    if not config_path.is_file():
        return DEFAULT_MAX_MODEL_LEN
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_MAX_MODEL_LEN
    text_config = config.get("text_config") or {}
    limit = text_config.get("max_position_embeddings") or config.get("max_position_embeddings")
    return min(DEFAULT_MAX_MODEL_LEN, int(limit)) if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_MODEL_LEN


def build_vllm_command(
    model: str,
    *,
    adapters: list[Adapter] | tuple[Adapter, ...] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    images_per_prompt: int = DEFAULT_IMAGES_PER_PROMPT,
    served_model_name: str | None = None,
    executable: str = "vllm",
) -> list[str]:
    """The `vllm serve` command line for `model` with its LoRA adapters.

    Parameters
    ----------
    model
        Hub id or local folder of the base model.
    adapters
        LoRA adapters, each served as its own model name next to the base model.
    tensor_parallel_size
        GPUs one copy of the model is split over.
    max_model_len
        Context length; None uses `default_max_model_len(model)`.
    images_per_prompt
        Most images one request may carry (`--limit-mm-per-prompt`).
    served_model_name
        Name clients use for the base model; None keeps `model`.
    """
    if tensor_parallel_size < 1:
        raise ConfigError(f"--tensor-parallel-size should be at least 1, got {tensor_parallel_size}")
    if images_per_prompt < 1:
        raise ConfigError(f"images per prompt should be at least 1, got {images_per_prompt}")
    max_model_len = default_max_model_len(model) if max_model_len is None else max_model_len
    if max_model_len < 1:
        raise ConfigError(f"--max-model-len should be positive, got {max_model_len}")
    command = [executable, "serve", str(model), "--host", host, "--port", str(port)]
    command += ["--served-model-name", served_model_name or str(model)]
    command += ["--tensor-parallel-size", str(tensor_parallel_size), "--max-model-len", str(max_model_len)]
    command += ["--limit-mm-per-prompt", json.dumps({"image": images_per_prompt})]
    if adapters:
        names = [adapter.name for adapter in adapters]
        if len(set(names)) != len(names) or (served_model_name or str(model)) in names:
            raise ConfigError(f"adapter names should be unique and differ from the base model's: {names}")
        command += ["--enable-lora", "--lora-modules", *(f"{a.name}={a.path}" for a in adapters)]
        command += ["--max-lora-rank", str(vllm_max_lora_rank(adapters)), "--max-loras", str(len(adapters))]
    return command


def build_transformers_command(model: str, *, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The `transformers serve` command line that preloads `model` (LoRA adapters are not supported there).

    It runs through this module (`python -m gaea.models.serving`) so that, where torchvision is missing, the
    server loads Qwen2.5-VL processors through `gaea.models.vlm.load_processor` instead of failing on their video half.
    """
    serve_args = ["serve", str(model), "--host", host, "--port", str(port), "--log-level", "info"]
    return [sys.executable, "-m", "gaea.models.serving", "transformers", *serve_args]


class _AnswerTextParser:
    """transformers serve's ResponseParser, whose answer text leaves out the tokenizer's special tokens.

    The parser reads a decode that keeps special tokens (it needs the delimiters of reasoning and tool calls), and
    hands every special token that is no delimiter of its (`<|im_start|>`, `<|vision_end|>`, ...) on to the client
    inside the answer. The in-process backend decodes with `skip_special_tokens=True`; served answers should read
    the same.
    """

    def __init__(self, parser: Any, special_tokens: re.Pattern[str]) -> None:
        self._parser = parser
        self._special_tokens = special_tokens
        self.initial_events = self._clean(parser.initial_events)

    def feed(self, text: str) -> list[dict]:
        return self._clean(self._parser.feed(text))

    def finalize(self) -> tuple[dict, list[dict]]:
        message, events = self._parser.finalize()
        return message, self._clean(events)

    def _clean(self, events: list[dict]) -> list[dict]:
        return [
            {**event, "text": self._special_tokens.sub("", event["text"])}
            if event.get("type") == "region_chunk" and isinstance(event.get("text"), str) else event
            for event in events
        ]


def _special_tokens_pattern(processor: Any) -> re.Pattern[str]:
    """A pattern matching each special token of the processor's tokenizer (longest first)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    tokens = {token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values() if token.special}
    tokens |= set(getattr(tokenizer, "all_special_tokens", []))
    alternatives = "|".join(re.escape(token) for token in sorted(tokens, key=len, reverse=True) if token)
    return re.compile(alternatives or r"(?!)")


def _serve_answers_without_special_tokens() -> None:
    """Make transformers serve's answers (streamed or whole, chat completions and responses) free of special tokens."""
    from transformers.cli.serving import chat_completion, response, utils

    build_parser, parse_message = utils.build_response_parser, utils.parse_assistant_message

    def build_response_parser(processor: Any, model: Any, input_ids: Any, tools: Any = None) -> Any:
        parser = build_parser(processor, model, input_ids, tools=tools)
        return None if parser is None else _AnswerTextParser(parser, _special_tokens_pattern(processor))

    def parse_assistant_message(processor: Any, model: Any, generated_ids: Any, input_ids: Any,
                                cleaned_content: str = "", tools: Any = None) -> tuple:
        content, reasoning, tool_calls = parse_message(
            processor, model, generated_ids, input_ids, cleaned_content=cleaned_content, tools=tools
        )
        special_tokens = _special_tokens_pattern(processor)
        return special_tokens.sub("", content), reasoning and special_tokens.sub("", reasoning), tool_calls

    for module in (chat_completion, response):  # both import the two functions by name
        module.build_response_parser = build_response_parser
        module.parse_assistant_message = parse_assistant_message


def _run_transformers_cli(argv: list[str]) -> None:
    """Run the `transformers` CLI with `argv`: answers without special tokens, and processors loaded without
    torchvision when it is not installed."""
    from transformers.cli.transformers import main as transformers_main

    _serve_answers_without_special_tokens()
    if importlib.util.find_spec("torchvision") is None:
        from transformers.cli.serving import model_manager

        from gaea.models.vlm import load_processor

        def load_processor_without_torchvision(self, model_id_and_revision: str, gguf_file: str | None = None):
            model_id, _revision = model_manager.split_revision(model_id_and_revision)
            return load_processor(model_id)

        # Only the processor loader and the answer text change; the server, its routes and model loading are stock.
        model_manager.ModelManager._load_processor = load_processor_without_torchvision
    sys.argv = ["transformers", *argv]
    transformers_main()


def choose_engine(engine: str) -> str:
    """`engine`, with "auto" resolved: vLLM where it is installed, else transformers."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("--engine vllm: vLLM is not installed here (pip install 'gaea-geolocation[serve]')")
    return engine


def health_path(engine: str) -> str:
    """The path that answers 200 once the server can take requests."""
    return "/health" if engine == "vllm" else "/v1/models"


class ServerProcess:
    """A model server running as a child in its own process group, its output captured to a log file.

    Parameters
    ----------
    command
        The server's command line.
    base_url
        Where it listens, e.g. ``http://127.0.0.1:8000``.
    health
        Path that answers 200 once it is ready.
    log_path
        File for its stdout and stderr; None makes a temporary one.
    env
        Variables set for the server on top of this process's environment.
    """

    def __init__(
        self,
        command: list[str],
        base_url: str,
        health: str,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = command
        self.base_url = base_url.rstrip("/")
        self.health_url = self.base_url + health
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="gaea-serve-", suffix=".log")[1])
        self.env = {**os.environ, **env} if env else None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the server in a new session, so a Ctrl-C in our terminal reaches us and not it."""
        log.info("starting: %s (log: %s)", " ".join(self.command), self.log_path)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the server wrote."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log_file:
                return "".join(deque(log_file, maxlen=lines)).rstrip()
        except OSError:
            return ""

    def wait_until_ready(self, *, timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S, poll_s: float = 0.5) -> None:
        """Block until the health check answers 200.

        Raises
        ------
        BackendError
            When the server exits first (its last log lines quoted) or is not ready within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise BackendError(
                    f"the server exited with code {code} before it was ready; its last lines:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.health_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        self.stop()
        raise BackendError(
            f"the server did not answer {self.health_url} within {timeout_s:.0f} s; its last lines:\n{self.log_tail()}"
        )

    def served_models(self) -> list[str]:
        """The model names the server lists at /v1/models."""
        response = httpx.get(self.base_url + "/v1/models", timeout=10.0)
        response.raise_for_status()
        return [entry["id"] for entry in response.json().get("data", [])]

    def stop(self, *, grace_s: float = DEFAULT_GRACE_S) -> int | None:
        """Terminate the whole process group, then kill it after `grace_s`; the server's exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("the server did not stop within %.0f s of SIGTERM; killing it", grace_s)
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Workers it spawned (vLLM's engine core, tensor-parallel ranks) share its group and may outlive it.
        self._signal_group(signal.SIGKILL)
        return self.process.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def loopback_transformers_server(
    model: str | Path, *, port: int | None = None, timeout_s: float = 180.0, log_path: Path | None = None
) -> Iterator[str]:
    """`transformers serve` preloading the local `model` on 127.0.0.1, offline, for the length of the block.

    Yields its API root ``http://127.0.0.1:PORT/v1`` once `/v1/models` answers; the server's whole process
    group is stopped on exit, also when the block fails.

    Raises
    ------
    BackendError
        When the server exits or is not ready within `timeout_s` (its last log lines quoted).
    """
    port = port or free_port()
    command = build_transformers_command(str(model), host=LOOPBACK, port=port)
    server = ServerProcess(command, f"http://{LOOPBACK}:{port}", health_path("transformers"), log_path=log_path,
                           env=OFFLINE_ENV)
    try:
        server.start()
        server.wait_until_ready(timeout_s=timeout_s)
        yield server.base_url + "/v1"
    finally:
        server.stop(grace_s=10.0)
        if log_path is None:
            server.log_path.unlink(missing_ok=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["transformers"]:
        sys.exit("usage: python -m gaea.models.serving transformers serve MODEL [transformers serve options]")
    _run_transformers_cli(sys.argv[2:])
