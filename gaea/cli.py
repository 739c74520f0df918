"""The `gaea` command. Thin: each subcommand lives in its own module with a `main(argv) -> int`,
imported only when that subcommand runs, so `gaea --help` starts fast and torch loads only when needed."""

from __future__ import annotations

import importlib
import logging
import os
import sys

from gaea import __version__
from gaea.errors import GaeaError

# name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ask": ("gaea.commands.ask", "answer one question about one photo"),
    "locate": ("gaea.commands.locate", "predict where each photo was taken"),
    "osm": ("gaea.osm.cli", "list OpenStreetMap features near a point (local extract or Overpass)"),
    "gallery": ("gaea.commands.gallery", "build a geotagged photo gallery for retrieval"),
    "serve": ("gaea.commands.serve", "start an OpenAI-compatible model server (vLLM or transformers serve)"),
    "ui": ("ui.cli", "start the chat in the browser (Gradio)"),
    "data": ("data_pipeline.cli", "build QA datasets from geotagged photos and OpenStreetMap"),
    "finetune": ("finetune.cli", "LoRA / QLoRA fine-tuning of a vision-language model"),
    "eval": ("eval.cli", "evaluate on GAEA-Bench and geolocation benchmarks"),
    "tiny-model": ("gaea.commands.tiny_model", "build tiny offline models for tests and demos"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        f"gaea {__version__}: a conversational image-geolocation assistant",
        "",
        "usage: gaea COMMAND [options]    (gaea COMMAND --help for a command's options)",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=os.environ.get("GAEA_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gaea: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except GaeaError as error:
        print(f"gaea {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gaea {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
