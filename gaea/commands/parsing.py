"""The argument parser every `gaea` command is built with, so that all of them look and fail alike.

- `CommandParser` errors are one line, ``gaea data build: error: ... (see gaea data build --help)``, exit 2;
- `add_command` makes a leaf (a description, an ``example:`` epilog and the function that runs it);
- `CommandParser.alias` accepts another spelling of an option (``--output_dir`` for ``--output-dir``), saying
  on stderr when that spelling is deprecated (``--photos`` for ``--images``);
- `CommandParser.legacy_form` keeps an old command shape working one release with a warning;
- `warn` prints a visible warning; `given` / `given_in` tell an option the user set from one left at its
  default, and `refuse_inapplicable` turns those that cannot apply into one ConfigError, so that an option is
  refused or warned about, never silently dropped;
- `iter_commands` walks the tree (the README's command table, the tests of every command).

argparse itself is kept (one well-known library); what is written here is only what it lacks on Python 3.11
(aliases that warn, one-line errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gaea.errors import ConfigError

Run = Callable[[argparse.Namespace], int]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples, and names option values alike everywhere:
    SECONDS for timeouts, N for counts, else the last word of the option (``--base-url URL``,
    ``--overpass-cache-dir DIR``, ``--radius-m M``), unless the option names its own metavar."""

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        if "timeout" in action.dest:
            return "SECONDS"
        if action.type is int:
            return "N"
        return action.dest.rsplit("_", 1)[-1].upper()


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser with one-line errors, option aliases and legacy command forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._aliases: dict[str, tuple[str, bool]] = {}
        self._legacy: tuple[Callable[[list[str]], list[str] | None], str] | None = None
        #: The one-line help shown for this command in its group's --help (and the README's table).
        self.summary = ""
        # The deepest parser's default wins, so after parsing `args._parser` is the leaf that ran.
        self.set_defaults(_parser=self)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def warn(self, message: str) -> None:
        print(f"{self.prog}: warning: {message}", file=sys.stderr)

    def alias(self, old: str, new: str, *, deprecated: bool = True) -> None:
        """Accept option `old` as `new` (also as ``old=VALUE``); a deprecated one warns each time it is used."""
        self._aliases[old] = (new, deprecated)

    def aliases(self) -> dict[str, tuple[str, bool]]:
        """Each other spelling of an option: (the option it stands for, whether it is deprecated)."""
        return dict(self._aliases)

    def legacy_form(self, rewrite: Callable[[list[str]], list[str] | None], message: str) -> None:
        """Arguments that match no command of this group are given to `rewrite`; when it returns new
        arguments they are parsed instead, after `message` (the deprecation warning)."""
        self._legacy = (rewrite, message)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        choices = self.subcommands()
        if choices:
            if not args:
                self.error(f"choose a command: {', '.join(choices)}")
            if self._legacy and args[0] not in choices and args[0] not in ("-h", "--help"):
                rewrite, message = self._legacy
                rewritten = rewrite(args)
                if rewritten is not None:
                    self.warn(message)
                    args = rewritten
        return super().parse_known_args(self._unalias(args), namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # Named by the command that was parsed, not by the top-level `gaea`.
            parsed._parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def subcommands(self) -> dict[str, CommandParser]:
        """The commands of this group by name (empty for a leaf command)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def _unalias(self, args: list[str]) -> list[str]:
        if not self._aliases:
            return args
        out: list[str] = []
        for position, arg in enumerate(args):
            if arg == "--":
                return out + args[position:]
            name, equals, value = arg.partition("=")
            if name in self._aliases:
                new, deprecated = self._aliases[name]
                if deprecated:
                    self.warn(f"{name} is deprecated and will be removed; use {new}")
                arg = new + equals + value
            out.append(arg)
        return out


def add_commands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The subcommands of a command group (``gaea data build|export|stats``)."""
    return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)


def command(
    parser: CommandParser, run: Run, *, description: str, examples: Sequence[str] = ()
) -> CommandParser:
    """Make `parser` a leaf command that `run`s: its description and its ``example:`` lines in --help."""
    parser.description = description
    if examples:
        parser.epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
    parser.set_defaults(run=run)
    return parser


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    run: Run,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
) -> CommandParser:
    """A leaf subcommand `name` of a group, which `run`s."""
    parser = commands.add_parser(name, help=help)
    parser.summary = help
    return command(parser, run, description=description or help[:1].upper() + help[1:] + ".", examples=examples)


def iter_commands(parser: CommandParser) -> Iterator[CommandParser]:
    """Every leaf command under `parser` (itself when it is one), in the order they were added."""
    subcommands = parser.subcommands()
    if not subcommands:
        yield parser
    for sub in subcommands.values():
        yield from iter_commands(sub)


def given_in(args: argparse.Namespace, *groups: str) -> list[str]:
    """`given` for every option of the argument groups titled `groups` (``"model"``, ``"map data"``, ...)."""
    parser: CommandParser = args._parser
    dests = [action.dest for group in parser._action_groups if group.title in groups for action in group._group_actions]
    return given(args, *dests)


def refuse_inapplicable(options: Sequence[str], applies: str, hint: str = "") -> None:
    """Raise a ConfigError naming `options` (when there are any): they apply only `applies`."""
    if options:
        verb = "applies" if len(options) == 1 else "apply"
        raise ConfigError(f"{' and '.join(options)} {verb} {applies}" + (f"; {hint}" if hint else ""))


def warn(args: argparse.Namespace, message: str) -> None:
    """A visible warning, ``gaea COMMAND: warning: ...`` on stderr, from the command that was parsed."""
    args._parser.warn(message)


def given(args: argparse.Namespace, *dests: str) -> list[str]:
    """The options among `dests` (destination names) that the user set to something else than their default,
    spelled as on the command line (``--max-model-len``)."""
    parser: CommandParser = args._parser
    spelled = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    return [spelled.get(dest, dest) for dest in dests if getattr(args, dest, None) != parser.get_default(dest)]
