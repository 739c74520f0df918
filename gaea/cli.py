"""The `gaea` command: one argparse tree whose branches come from each package's own command module.

How to add a command
--------------------
1. Write its module (in the package it belongs to: ``gaea/commands/NAME.py``, ``eval/cli.py``, ...) with::

       from gaea.commands.parsing import CommandParser, add_command, add_commands, command

       def configure(parser: CommandParser) -> None:
           # a leaf:  gaea NAME [options]
           command(parser, run, description="What it does.", examples=["gaea NAME --out x/"])
           parser.add_argument("--out", required=True, help="...")
           # or a group:  gaea NAME build|info [options]
           commands = add_commands(parser)
           build = add_command(commands, "build", run_build, help="build a thing", examples=[...])
           build.add_argument(...)

       def run(args: argparse.Namespace) -> int:
           from heavy.module import thing   # torch, transformers, gradio: only here, never at the top
           ...
           return 0

2. Add ``"NAME": ("package.module", "one-line help")`` to `COMMANDS` below.
3. Options are kebab-case (``--radius-m``); the same thing has the same name in every command (``--images``
   for photos in, ``--osm-file`` / ``--overpass [--overpass-url]``, ``--served-model``); an old spelling stays
   one release as ``parser.alias(old, new)``. An option that cannot apply is an error (`ConfigError`) or a
   `warn(args, ...)`, never silently dropped. Bad input raises a `GaeaError`, printed here as one line, exit 2.
4. Run ``python tools/cli_table.py`` to refresh the README's command table (a test checks it is current).

Only the module of the command being run is imported, so `gaea --help` starts fast and never loads torch;
`gaea/` imports the other packages nowhere but here, by name, lazily.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

from gaea import __version__
from gaea.commands.parsing import CommandParser, add_commands
from gaea.errors import GaeaError

# name -> (module with configure(parser), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ask": ("gaea.commands.ask", "answer one question about one photo"),
    "locate": ("gaea.commands.locate", "predict where each photo was taken"),
    "osm": ("gaea.osm.cli", "OpenStreetMap features near a point (local extract or Overpass)"),
    "gallery": ("gaea.commands.gallery", "build and inspect geotagged photo galleries for retrieval"),
    "serve": ("gaea.commands.serve", "start an OpenAI-compatible model server (vLLM or transformers serve)"),
    "ui": ("ui.cli", "start the chat in the browser (Gradio)"),
    "data": ("data_pipeline.cli", "build QA datasets from geotagged photos and OpenStreetMap"),
    "finetune": ("finetune.cli", "LoRA / QLoRA fine-tuning of a vision-language model"),
    "locmodel": ("finetune.locmodel_cli", "train and evaluate location models (GeoCLIP, S2 cells, SHDD)"),
    "eval": ("eval.cli", "evaluate on GAEA-Bench and geolocation benchmarks"),
    "tiny-model": ("gaea.commands.tiny_model", "build tiny offline models for tests and demos"),
}

#: `build_parser(ALL)` configures every command (the README table); otherwise only the one named.
ALL = "*"

#: Third-party log lines that do not concern the user, silenced below the level given. bitsandbytes' CPU backend
#: warns at import (which transformers and peft trigger in every run) that an optional kernel package is missing;
#: it falls back to its own CPU code, so nothing is wrong.
QUIET_LOGGERS = {"bitsandbytes.backends.cpu.ops": logging.ERROR}
#: Third-party warnings (category, message pattern) that do not concern the user: peft reads a property that
#: transformers 5 deprecates, once per fine-tuning run.
QUIET_WARNINGS = [(FutureWarning, r"`is_gradient_checkpointing` is deprecated")]


def build_parser(only: str = ALL) -> CommandParser:
    """The `gaea` parser; the options of command `only` (or of all commands) are filled in."""
    parser = CommandParser(
        prog="gaea",
        description=f"gaea {__version__}: a conversational image-geolocation assistant.",
        epilog="`gaea COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = add_commands(parser)
    for name, (module, help_) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_, description=help_[:1].upper() + help_[1:] + ".")
        sub.summary = help_
        if only in (ALL, name):
            importlib.import_module(module).configure(sub)
    return parser


def _command_named(argv: list[str]) -> str:
    # Top-level options take no value, so the first word that is not an option is the command.
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    """Run `gaea ARGV...`; returns the exit code (0 success, 2 bad input or usage, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=os.environ.get("GAEA_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    for logger, level in QUIET_LOGGERS.items():
        logging.getLogger(logger).setLevel(level)
    for category, pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    name = _command_named(argv)
    prog = f"gaea {name}".strip()
    try:
        args = build_parser(name).parse_args(argv)
        prog = args._parser.prog
        return int(args.run(args) or 0)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 2
    except GaeaError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
