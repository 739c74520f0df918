"""`gaea eval` on a Dask cluster (``--workers N`` / ``--scheduler ADDRESS``, see gaea.distributed): what the
workers run.

The items are cut, in order, into parts; each worker builds the model and its context (gallery, location
model, ranker, map data) from the run's options once, keeps them for every later part (and later runs with the
same options), and sends back the answers. This process stays the only writer of the run directory: the runner
(eval.runner) turns the answers into samples here (the judge runs here, with its key) and commits each part as it
arrives, in item order, so a run on a cluster writes what the same run in one process writes and resumes alike.

No credential travels in the task graph: the judge's key is never sent, and a worker reads the model server's
key from its own environment ($GAEA_API_KEY, or the variable of ``--api-key env:NAME``).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from gaea.credentials import ENV_PREFIX, MODEL_KEY_ENV, redact_url
from gaea.errors import ConfigError

#: The option groups that make the Assistant (gaea.commands.common / context_args): what a worker rebuilds.
ASSISTANT_GROUPS = ("model", "generation", "retrieval", "location model", "candidates and ranking", "map data")


@dataclass(frozen=True)
class Recipe:
    """What a worker needs to answer the parts of one run."""

    #: The `gaea eval` command: "bench" (answer the question) or "geo" (locate the photo).
    command: str
    #: The values of the options of `ASSISTANT_GROUPS`, without secrets.
    options: dict[str, Any]
    #: Items of a part answered at once (a model server answers requests in parallel; a model in a worker one
    #: at a time).
    threads: int = 1


def recipe_of(args: argparse.Namespace, command: str, *, threads: int = 1) -> Recipe:
    """The Recipe of a run, refusing credentials that could reach the workers only through their task graph."""
    refuse_travelling_credentials(args)
    parser = args._parser
    dests = {action.dest for group in parser._action_groups if group.title in ASSISTANT_GROUPS
             for action in group._group_actions}
    options = {dest: getattr(args, dest) for dest in sorted(dests) if hasattr(args, dest)}
    return Recipe(command, options, threads)


def refuse_travelling_credentials(args: argparse.Namespace) -> None:
    """A ConfigError for a model key or URL credentials that the workers could get only in their tasks."""
    where = f"give --api-key {ENV_PREFIX}NAME (each worker reads NAME) or set ${MODEL_KEY_ENV} where the workers run"
    if args.api_key and not args.api_key.startswith(ENV_PREFIX):
        raise ConfigError(f"--api-key KEY would travel to the Dask workers in their task graph; {where}")
    for url in args.base_url or []:
        if redact_url(url) != url:
            raise ConfigError(f"--base-url {redact_url(url)}: its credentials or query values would travel to the "
                              f"Dask workers in their task graph; {where}")


def answer_part(items: list[Any], recipe: Recipe) -> list[Any]:
    """The answers to a part's items, in their order, by this worker's model (those of eval.bench.answer_of,
    or of eval.geo_eval.located for geo's `TruthPhoto` items)."""
    answer = _answerer(recipe)
    if recipe.threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=min(recipe.threads, len(items)), thread_name_prefix="eval") as pool:
            return list(pool.map(answer, items))
    return [answer(item) for item in items]


def _answerer(recipe: Recipe) -> Callable[[Any], Any]:
    assistant = _worker_assistant(recipe.command, recipe.options)
    if recipe.command == "geo":
        from eval.geo_eval import located

        return lambda item: located(assistant.locate, item.path)  # items are eval.geo_eval.TruthPhoto
    from eval.bench import answer_of

    return partial(answer_of, assistant)


_cached: tuple[str, Any] | None = None
_cache_lock = threading.Lock()


def _worker_assistant(command: str, options: dict[str, Any]) -> Any:
    """The Assistant of these options, built once per worker process and kept while they stay the same (one
    at a time: a new model replaces the old one rather than sitting beside it)."""
    global _cached
    key = json.dumps([command, options], sort_keys=True, default=str)
    with _cache_lock:
        if _cached is None or _cached[0] != key:
            from gaea.commands.context_args import assistant_from_args

            _cached = None
            _cached = (key, assistant_from_args(_namespace(command, options)))
        return _cached[1]


def _namespace(command: str, options: dict[str, Any]) -> argparse.Namespace:
    """The parsed options of ``gaea eval COMMAND`` as the worker rebuilds them: the command's defaults, the
    run's values, and its parser (which option checks compare against)."""
    from gaea.cli import build_parser

    parser = build_parser("eval").subcommands()["eval"].subcommands()[command]
    defaults = {action.dest: action.default for action in parser._actions if action.dest != "help"}
    return argparse.Namespace(**(defaults | options | {"_parser": parser}))
