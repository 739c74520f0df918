"""`gaea eval`: GAEA-Bench QA (`bench`), distance and city / country accuracy (`geo`), and `compare`.

Thin: parse, load, run, report. Each run writes to its --out directory and can be resumed by running the
same command again; the run journal there (gaea.runs) keeps a second run out while one works, and refuses to
resume with a different model, judge or dataset.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

from eval.judge import DEFAULT_ATTEMPTS, GAEA_JUDGE_MODEL, SCORINGS
from eval.report import SAMPLES_FILE
from gaea.commands.parsing import (
    CommandParser,
    add_command,
    add_commands,
    given,
    given_in,
    refuse_inapplicable,
    warn,
)
from gaea.credentials import JUDGE_KEY_ENV, key_option_help, redacted
from gaea.errors import BadInputError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 32
#: Settings that must not change between a run and its resumption (others, like --limit, may).
_IDENTITY_KEYS = (
    "task", "dataset", "split", "truth", "predictions", "images", "model", "adapter", "base_url", "served_model",
    "backend", "judge_base_url", "judge_model", "judge_free", "judge_max_tokens", "scoring", "gallery", "encoder",
    "k_similar", "k_dissimilar", "ensemble", "osm_file", "overpass", "max_new_tokens", "temperature", "top_p", "seed",
    "candidates", "ranker", "ranker_model", "dedupe_km",
)  # fmt: skip


def configure(parser: CommandParser) -> None:
    from gaea.commands.common import add_backend_arguments, add_cluster_arguments
    from gaea.commands.context_args import add_context_arguments

    commands = add_commands(parser)
    bench = add_command(
        commands, "bench", run_bench, help="GAEA-Bench QA: MCQ, TF, SVQA, LVQA scored by an LLM judge or judge-free",
        examples=["gaea eval bench --dataset hf:ucf-crcv/GAEA-Bench --base-url http://127.0.0.1:8000/v1 "
                  "--judge-base-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/bench",
                  "gaea eval bench --dataset hf:ucf-crcv/GAEA-Bench --base-url http://127.0.0.1:8000/v1 "
                  "--scoring gaea --judge-base-url https://api.openai.com/v1 --out runs/bench-gaea"],
    )
    bench.add_argument("--dataset", required=True,
                       help="hf:OWNER/NAME[:SPLIT] (default split: test), a qa.jsonl, parquet, a `gaea data build` "
                            "folder or a save_to_disk folder (DIR[:SPLIT])")
    add_backend_arguments(bench)
    add_context_arguments(bench)
    bench.add_argument("--out", required=True, type=Path, help="run directory (results.json, samples.jsonl, ...)")
    bench.add_argument("--overwrite", action="store_true", help="delete an earlier run in --out and start afresh")
    bench.add_argument("--judge-base-url", help="OpenAI-compatible endpoint of the judge, e.g. https://api.openai.com/v1")
    bench.add_argument("--judge-model",
                       help=f"the judge's model name, e.g. gpt-4o (with --scoring gaea: {GAEA_JUDGE_MODEL}, GAEA's)")
    bench.add_argument("--judge-api-key", metavar="KEY", help=key_option_help("the judge", JUDGE_KEY_ENV))
    bench.add_argument("--judge-free", action="store_true", help="score without a judge (labelled in every report)")
    bench.add_argument("--judge-max-tokens", type=int, default=256, help="longest judge reply in tokens")
    bench.add_argument("--judge-attempts", type=int,
                       help="judge calls per answer before an unreadable reply is a judge error "
                            f"({DEFAULT_ATTEMPTS['strict']}; GAEA's scoring asks once)")
    bench.add_argument("--scoring", choices=SCORINGS, default="strict",
                       help="strict: our judge instructions, unreadable replies asked again, then counted as errors; "
                            "gaea: GAEA's judge instructions and published arithmetic (integer item scores, "
                            "unreadable replies left out). results.json holds both arithmetics either way")
    bench.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight (servers)")
    bench.add_argument("--limit", type=int, help="evaluate only the first N questions")
    bench.add_argument("--types", help="comma-separated question types (default MCQ,TF,SVQA,LVQA)")
    add_cluster_arguments(bench)

    geo = add_command(
        commands, "geo", run_geo, help="distance accuracy, GeoScore, city / country accuracy",
        examples=["gaea eval geo --truth ../shared/data/benchmarks/im2gps3k_latlon.csv --predictions preds.csv "
                  "--out runs/geo",
                  "gaea eval geo --truth ../shared/data/benchmarks/gaea/cityguessr_citygt.csv --predictions preds.csv "
                  "--out runs/cg --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o-mini"],
    )
    geo.add_argument("--truth", required=True, type=Path,
                     help="CSV with an id (id, IMG_ID, FILE, file_path, ...) and lat / lon and / or city / country "
                          "(GAEA's ground-truth files as released)")
    source = geo.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path,
                        help="CSV with id and lat / lon, city / country, or a `prediction` text column")
    source.add_argument("--images", type=Path, help="directory of the photos to locate with a model")
    add_backend_arguments(geo)
    add_context_arguments(geo, map_data=False)
    geo.add_argument("--out", required=True, type=Path, help="run directory")
    geo.add_argument("--overwrite", action="store_true", help="delete an earlier run in --out and start afresh")
    geo.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight (servers)")
    geo.add_argument("--judge-base-url",
                     help="also judge city / country with GAEA's question, via this OpenAI-compatible endpoint")
    geo.add_argument("--judge-model", help="the judge's model name (GAEA's: gpt-4o-mini)")
    geo.add_argument("--judge-api-key", metavar="KEY", help=key_option_help("the judge", JUDGE_KEY_ENV))
    geo.add_argument("--judge-max-tokens", type=int, default=256, help="longest judge reply in tokens")
    add_cluster_arguments(geo)

    compare = add_command(commands, "compare", run_compare, help="print runs side by side",
                          examples=["gaea eval compare runs/base runs/lora"])
    compare.add_argument("runs", nargs="+", type=Path, help="run directories (--out of earlier runs)")


def run_compare(args: argparse.Namespace) -> int:
    from eval.compare import compare_table

    print(compare_table(args.runs), end="")
    return 0


def _check_concurrency(args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {args.concurrency}")


def run_bench(args: argparse.Namespace) -> int:
    """Load the data, answer, score, aggregate, report."""
    _check_concurrency(args)
    from eval.bench import make_worker, sample_of
    from eval.data import load_bench, parse_types
    from eval.report import run_header, write_bench_report
    from eval.runner import run_resumable
    from eval.scoring import aggregate, gaea_scores
    from gaea.commands.common import backend_from_args, model_name_from_args, params_from_args
    from gaea.commands.context_args import assistant_from_args
    from gaea.distributed import cluster

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {args.limit}")
    params_from_args(args)  # checks the generation options before anything slow starts
    _check_cluster_options(args)
    scorer = _scorer_from_args(args)
    concurrency = _concurrency_for(args)
    items = load_bench(args.dataset, types=parse_types(args.types), limit=args.limit)
    config = _config_of(args, task="gaea-bench")
    with _hold_run_dir(args, config), cluster(args.scheduler, args.workers) as client:
        if client is None:
            backend = backend_from_args(args)
            work, model = make_worker(assistant_from_args(args, backend), scorer), backend.name
        else:
            work = _on_cluster(args, client, "bench", concurrency, finish=partial(sample_of, scorer=scorer))
            model, concurrency = model_name_from_args(args), args.concurrency  # here: the judge's requests
        samples = run_resumable(items, work, samples_path=args.out / SAMPLES_FILE, concurrency=concurrency,
                                desc="GAEA-Bench")
        header = run_header(task="gaea-bench", model=model, judge=scorer.name, config=config)
        results = header | {"scoring": args.scoring} | aggregate(samples) | {"gaea": gaea_scores(samples)}
        write_bench_report(args.out, results)
    _print_summary(args.out)
    return 0


def run_geo(args: argparse.Namespace) -> int:
    """Read the truth, get predictions (a CSV, or a model locating the photos), evaluate, report."""
    _check_concurrency(args)
    from eval.geo_eval import evaluate, read_predictions, read_truth
    from eval.report import run_header, write_geo_report

    if args.predictions is not None:
        _refuse_model_options(args)
    else:
        # Its warning comes before anything slow; a judge of the names uses --concurrency too.
        concurrency = _concurrency_for(args, judged=bool(args.judge_base_url))
        _check_cluster_options(args)
    truths = read_truth(args.truth)
    judge = _geo_judge_from_args(args)
    provided = read_predictions(args.predictions) if args.predictions is not None else None
    if provided is not None:
        _check_ids_match(args, truths, provided)
    config = _config_of(args, task="geo")
    with _hold_run_dir(args, config):
        if provided is not None:
            guesses, model = provided, f"predictions:{args.predictions.name}"
        else:
            guesses, model = _locate_all(args, truths, concurrency)
        summary, samples = evaluate(truths, guesses)
        judge_name = "none"
        if judge is not None:
            summary["judge"], samples = _judge_names(args, judge, samples)
            judge_name = summary["judge"]["model"]
        results = run_header(task="geo", model=model, judge=judge_name, config=config) | summary
        if provided is None:
            results["ranking"] = ranking_of(args)
        _write_geo_samples(args, samples)
        write_geo_report(args.out, results, [sample["distance_km"] for sample in samples])
    _print_summary(args.out)
    return 0


def _refuse_model_options(args: argparse.Namespace) -> None:
    """With --predictions no model runs: an option for the model, its context or its requests (unless a judge
    makes them) would be ignored."""
    refuse_inapplicable(
        given_in(args, "model", "generation", "retrieval", "location model", "candidates and ranking", "map data",
                 "cluster (Dask)")
        + ([] if args.judge_base_url else given(args, "concurrency")),
        "when a model locates --images", "--predictions are scored as they are",
    )


def _check_ids_match(args: argparse.Namespace, truths: list[Any], guesses: dict[str, Any]) -> None:
    """Refuse predictions that match no ground-truth id (they would score 0 % as if the model were wrong);
    warn about those that match none."""
    truth_ids = [truth.id for truth in truths]
    matched = set(truth_ids).intersection(guesses)
    if not matched:
        raise BadInputError(
            f"no id of {args.predictions} ({len(guesses)} rows, e.g. {_sample(list(guesses))}) is an id of "
            f"{args.truth} ({len(truth_ids)} rows, e.g. {_sample(truth_ids)}): are they the same benchmark?"
        )
    usable = [guesses[truth_id] for truth_id in matched if not guesses[truth_id].error or guesses[truth_id].answer]
    if not usable:
        first = next(guesses[truth_id] for truth_id in truth_ids if truth_id in matched)
        raise BadInputError(f"{args.predictions}: none of its {len(matched)} rows of ground-truth ids gives a "
                            f"usable prediction (e.g. {first.id!r}: {first.error})")
    unknown = [guess_id for guess_id in guesses if guess_id not in matched]
    if unknown:
        warn(args, f"{len(unknown)} of the {len(guesses)} ids of {args.predictions} are not in {args.truth} and "
                   f"are not scored, e.g. {_sample(unknown)}")


def _sample(ids: list[str], count: int = 3) -> str:
    return ", ".join(repr(item) for item in ids[:count]) + (", ..." if len(ids) > count else "") if ids else "none"


def _locate_all(args: argparse.Namespace, truths: list[Any], concurrency: int) -> tuple[dict[str, Any], str]:
    """Locate every ground-truth photo with the model (resumable, like bench); the guesses by id."""
    from eval.geo_eval import Guess, TruthPhoto, images_by_id, locate_worker, located_sample
    from eval.runner import run_resumable
    from gaea.commands.common import backend_from_args, model_name_from_args
    from gaea.commands.context_args import assistant_from_args
    from gaea.distributed import cluster

    images = images_by_id(truths, args.images)
    if not images:
        raise ConfigError(f"{args.images}: none of the {len(truths)} ground-truth ids has a photo there")
    with cluster(args.scheduler, args.workers) as client:
        items: list[Any] = truths
        if client is None:
            backend = backend_from_args(args)
            work, model = locate_worker(assistant_from_args(args, backend).locate, images), backend.name
        else:  # each part carries its photos' paths, not the whole run's
            items = [TruthPhoto(truth, images.get(truth.id)) for truth in truths]
            work = _on_cluster(args, client, "geo", concurrency,
                               finish=lambda item, answer: located_sample(item.truth, answer))
            model = model_name_from_args(args)
        samples = run_resumable(items, work, samples_path=args.out / "predictions.jsonl", concurrency=concurrency,
                                desc="locating")
    return {sample["id"]: Guess(**sample) for sample in samples}, model


def _check_cluster_options(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, what a run on a cluster cannot do (see eval.cluster)."""
    from gaea.distributed import is_distributed

    if is_distributed(args.scheduler, args.workers):
        from eval.cluster import refuse_travelling_credentials
        from gaea.commands.common import backend_name_from_args
        from gaea.commands.context_args import check_assistant_arguments

        # Here, not in the workers: a worker's ConfigError would come after the cluster started.
        backend_name_from_args(args)
        check_assistant_arguments(args)
        refuse_travelling_credentials(args)


def _on_cluster(args: argparse.Namespace, client: Any, command: str, concurrency: int, *, finish: Any) -> Any:
    """The work of a run on the cluster of `client` (eval.cluster): `concurrency` requests of a model server
    shared among its workers, each worker's in-process model answering one item at a time."""
    from eval.cluster import answer_part, recipe_of
    from eval.runner import OnCluster

    per_worker = math.ceil(concurrency / max(1, len(client.scheduler_info().get("workers", {}))))
    recipe = recipe_of(args, command, threads=per_worker)
    return OnCluster(client, answer_part, recipe, finish, part_size=per_worker)


def ranking_of(args: argparse.Namespace) -> dict[str, Any]:
    """How a located run chose its answers, for `gaea eval compare`: the ranker and the candidate sources
    (none: the model's answer, or the median of --ensemble answers)."""
    from gaea.ranking import parse_sources

    if args.candidates:
        return {"ranker": args.ranker or "median", "candidates": list(parse_sources(args.candidates))}
    return {"ranker": "median" if args.ensemble > 1 else "none", "candidates": ["lmm"]}


def _geo_judge_from_args(args: argparse.Namespace) -> Any:
    """The judge backend of `gaea eval geo`, or None without --judge-base-url."""
    if not (args.judge_base_url or args.judge_model):
        return None
    if not (args.judge_base_url and args.judge_model):
        raise ConfigError("--judge-base-url and --judge-model go together")
    if args.judge_max_tokens < 1:
        raise ConfigError(f"--judge-max-tokens must be at least 1, not {args.judge_max_tokens}")
    from gaea.models.backends import load_backend

    return load_backend("openai", base_url=args.judge_base_url, model=args.judge_model, api_key=args.judge_api_key,
                        key_env=JUDGE_KEY_ENV)


def _judge_names(args: argparse.Namespace, judge: Any, samples: list[dict[str, Any]]) -> tuple[dict, list[dict]]:
    """GAEA's judge on every row's city and country (resumable, like the model's answers); the summary
    and the samples with each row's verdicts."""
    from eval.geo_judge import judge_summary, judge_worker, name_items
    from eval.runner import run_resumable

    verdicts = run_resumable(
        name_items(samples),
        judge_worker(judge, max_tokens=args.judge_max_tokens),
        samples_path=args.out / "judge.jsonl",
        concurrency=args.concurrency,
        desc="judging names",
    )
    merged = [sample | {"judge": verdict} for sample, verdict in zip(samples, verdicts, strict=True)]
    return judge_summary(verdicts, judge=f"llm:{judge.name}"), merged


def _write_geo_samples(args: argparse.Namespace, samples: list[dict[str, Any]]) -> None:
    from gaea.io import atomic_write_jsonl

    atomic_write_jsonl(args.out / SAMPLES_FILE, samples)


def _scorer_from_args(args: argparse.Namespace) -> Any:
    if args.judge_free:
        refuse_inapplicable(given(args, "judge_base_url", "judge_model", "judge_max_tokens", "judge_attempts"),
                            "to an LLM judge, not to --judge-free")
        if args.scoring == "gaea":
            raise ConfigError(f"--scoring gaea scores with GAEA's judge: give --judge-base-url (its model is "
                              f"{GAEA_JUDGE_MODEL}), not --judge-free")
        from eval.judge_free import JudgeFreeScorer

        return JudgeFreeScorer()
    if args.scoring == "gaea":
        _check_gaea_judge(args)
    if not (args.judge_base_url and args.judge_model):
        raise ConfigError("choose a judge: --judge-base-url URL --judge-model NAME, or --judge-free")
    from eval.judge import LLMJudge
    from gaea.models.backends import load_backend
    from gaea.types import GenerationParams

    if (args.judge_attempts is not None and args.judge_attempts < 1) or args.judge_max_tokens < 1:
        raise ConfigError("--judge-attempts and --judge-max-tokens must be at least 1")
    return LLMJudge(
        load_backend("openai", base_url=args.judge_base_url, model=args.judge_model, api_key=args.judge_api_key,
                     key_env=JUDGE_KEY_ENV),
        scoring=args.scoring,
        attempts=args.judge_attempts,
        params=GenerationParams(max_new_tokens=args.judge_max_tokens, temperature=0.0),
    )


def _check_gaea_judge(args: argparse.Namespace) -> None:
    """GAEA's scoring: its judge model unless another is named (then said aloud), one ask per answer."""
    if args.judge_attempts not in (None, 1):
        raise ConfigError("--judge-attempts cannot apply with --scoring gaea: GAEA asks its judge once and leaves "
                          "an unreadable reply out")
    if args.judge_model is None:
        args.judge_model = GAEA_JUDGE_MODEL
    elif args.judge_model != GAEA_JUDGE_MODEL:
        print(f"warning: GAEA's published scores were judged by {GAEA_JUDGE_MODEL}; with --judge-model "
              f"{args.judge_model} they are not directly comparable", file=sys.stderr)


def _concurrency_for(args: argparse.Namespace, *, judged: bool = False) -> int:
    """Threads for a model behind a server; one at a time for a model in this process (said, unless the
    option is `judged`: used by a judge of its own)."""
    from gaea.commands.common import backend_name_from_args

    if backend_name_from_args(args) == "openai":
        return args.concurrency
    if given(args, "concurrency") and not judged:
        warn(args, f"--concurrency {args.concurrency} ignored: a model in this process answers one request at a time "
                   "(serve it with `gaea serve` and pass --base-url to answer in parallel)")
    return 1


def _config_of(args: argparse.Namespace, *, task: str) -> dict[str, Any]:
    config = {"task": task}
    config |= {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    if config.get("base_url") and len(config["base_url"]) == 1:  # one server: its URL, as runs have always recorded
        config["base_url"] = config["base_url"][0]
    # Keys and URL credentials are never written to run files.
    return {key: value for key, value in redacted(config).items() if _json_plain(value)}


def _json_plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool, list))


def _hold_run_dir(args: argparse.Namespace, config: dict[str, Any]) -> AbstractContextManager[Path]:
    """The run directory, held by this run alone; a resumed run must share the identity settings."""
    from gaea.runs import open_run

    fingerprint = {key: config[key] for key in _IDENTITY_KEYS if key in config}
    job = {"gaea-bench": "gaea eval bench", "geo": "gaea eval geo"}[config["task"]]
    return open_run(args.out, job=job, fingerprint=fingerprint, overwrite=args.overwrite)


def _print_summary(out_dir: Path) -> None:
    print((out_dir / "results.md").read_text(encoding="utf-8"), end="")
    print(f"\nwritten: {out_dir / 'results.json'}")
