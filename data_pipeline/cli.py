"""`gaea data build | build-ranking | export | stats`."""

from __future__ import annotations

import argparse
import json
import os

from data_pipeline.generators import ALL_TYPES
from gaea.commands.common import add_cluster_arguments
from gaea.commands.context_args import add_map_arguments, check_map_arguments
from gaea.commands.parsing import CommandParser, add_command, add_commands, warn
from gaea.credentials import REWRITE_KEY_ENV, key_option_help
from gaea.errors import BadInputError, ConfigError
from gaea.io import readable_name
from gaea.sources import SPEC_HELP


def configure(parser: CommandParser) -> None:
    commands = add_commands(parser)
    _configure_build(commands)
    _configure_build_ranking(commands)
    export = add_command(commands, "export", _run_export, help="export a built dataset for training",
                         examples=["gaea data export --in data/city --format llava --out train.jsonl"])
    export.add_argument("--in", dest="input", metavar="DIR", required=True,
                        help="a directory made by `gaea data build`")
    export.add_argument("--format", required=True, choices=("llava", "messages", "parquet"),
                        help="llava: GAEA-Train conversations; messages: TRL chat messages; parquet: with the images")
    export.add_argument("--out", required=True, help="the file to write (.jsonl for llava/messages)")
    stats = add_command(commands, "stats", _run_stats, help="counts of a built dataset",
                        examples=["gaea data stats data/city"])
    stats.add_argument("dir", help="a directory made by `gaea data build`")
    stats.add_argument("--json", action="store_true", help="print JSON")


def _configure_build(commands: argparse._SubParsersAction) -> None:
    build = add_command(
        commands, "build", _run_build, help="build a QA dataset from geotagged photos and OpenStreetMap",
        examples=["gaea data build --images photos/ --out data/city --osm-file city.osm.pbf --workers 2"],
    )
    build.add_argument("--images", required=True, help=SPEC_HELP)
    build.add_argument("--out", required=True, help="the dataset directory (a rerun resumes it)")
    add_map_arguments(build, required=True)
    build.add_argument("--overpass-cache-dir", help="where Overpass responses are cached")
    build.add_argument("--radius-m", type=float, default=1000.0, help="search radius around each photo (metres)")
    build.add_argument("--types", default=",".join(t.lower() for t in ALL_TYPES),
                       help="comma-separated question types: mcq,tf,svqa,lvqa,loc")
    build.add_argument("--seed", type=int, default=0, help="seed of the template choices")
    build.add_argument("--per-type", type=int, default=2, help="records per type and photo (TF: pairs = n // 2)")
    build.add_argument("--chunk-size", type=int, default=64, help="photos per chunk (the unit of resuming)")
    build.add_argument("--rewrite-base-url", help="OpenAI-compatible server that paraphrases questions")
    build.add_argument("--rewrite-model", help="model name on that server")
    build.add_argument("--rewrite-api-key", metavar="KEY", help=key_option_help("that server", REWRITE_KEY_ENV))
    build.add_argument("--overwrite", action="store_true", help="delete an earlier build in --out and start afresh")
    build.add_argument("--no-hf", action="store_true", help="skip the Hugging Face copy in OUT/hf")
    build.alias("--photos", "--images")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_arguments(build)


def _configure_build_ranking(commands: argparse._SubParsersAction) -> None:
    ranking = add_command(
        commands, "build-ranking", _run_build_ranking,
        help="the training set of the trained ranker: each photo's candidate pool with true distances",
        examples=["gaea data build-ranking --images photos/ --gallery gallery/ --out data/ranking"],
    )
    ranking.add_argument("--images", required=True, help=SPEC_HELP + " (with coordinates)")
    ranking.add_argument("--gallery", required=True, help="a gallery made by `gaea gallery build` (the neighbours)")
    ranking.add_argument("--out", required=True, help="the ranking set's directory")
    ranking.add_argument("--encoder", help="image encoder (default: the gallery's)")
    ranking.add_argument("--k-neighbours", type=int, default=8, help="similar gallery photos per photo (8)")
    ranking.add_argument("--location-model", help="a `gaea locmodel train` model whose top places join the pool")
    ranking.add_argument("--k-candidates", type=int, default=5, help="places of the location model per photo (5)")
    ranking.add_argument("--photos-per-candidate", type=int, default=3,
                         help="gallery photos kept as each candidate's evidence: its own, then the nearest (3)")
    ranking.add_argument("--dedupe-km", type=float, default=0.0,
                         help="merge candidates closer than this (default 0: keep every one, for more pairs)")
    ranking.add_argument("--overwrite", action="store_true", help="delete an earlier build in --out and start afresh")


def _run_build_ranking(args: argparse.Namespace) -> int:
    from data_pipeline.ranking import build_ranking_set

    summary = build_ranking_set(args.images, args.gallery, args.out, encoder=args.encoder,
                                k_neighbours=args.k_neighbours, location_model=args.location_model,
                                k_candidates=args.k_candidates, photos_per_candidate=args.photos_per_candidate,
                                dedupe_km=args.dedupe_km, overwrite=args.overwrite)
    print(summary.line())
    print(f"written: {os.path.join(args.out, 'ranking.jsonl')}")
    return 0


def _run_build(args: argparse.Namespace) -> int:
    from data_pipeline.build import BuildConfig, build_dataset

    check_map_arguments(args)
    if args.overpass_cache_dir and not args.overpass:
        raise ConfigError("--overpass-cache-dir applies with --overpass")
    workers = args.workers or 1
    if args.overpass:
        if workers > 1 or args.scheduler:
            # Parallel workers would each keep their own pace and break Overpass's polite rate limit.
            ignored = f"--workers {workers}" if workers > 1 else "--scheduler"
            warn(args, f"{ignored} ignored: Overpass lookups run in one process")
        workers = 1
    config = BuildConfig(
        photos=args.images, out=args.out, osm_file=str(args.osm_file) if args.osm_file else None,
        overpass=args.overpass, overpass_url=args.overpass_url, overpass_cache_dir=args.overpass_cache_dir,
        radius_m=args.radius_m, types=tuple(t.strip() for t in args.types.split(",") if t.strip()),
        seed=args.seed, per_type=args.per_type, workers=workers, scheduler=None if args.overpass else args.scheduler,
        chunk_size=args.chunk_size,
        rewrite_base_url=args.rewrite_base_url, rewrite_model=args.rewrite_model,
        rewrite_api_key=args.rewrite_api_key, hf_dataset=not args.no_hf, progress=not args.quiet,
    )
    summary = build_dataset(config, overwrite=args.overwrite)
    if summary.outside_line:
        warn(args, summary.outside_line)
    print("\n".join(summary.lines()))
    if not summary.photos_used:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.skipped.items())) or "no photos"
        raise BadInputError(f"{readable_name(args.images)}: no usable photo ({reasons}); the reasons are in "
                            f"{os.path.join(args.out, 'skipped.jsonl')}")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from data_pipeline.export import export_dataset

    count = export_dataset(args.input, args.format, args.out)
    print(f"wrote {count} rows to {args.out} ({args.format})")
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    from data_pipeline.card import dataset_stats

    stats = dataset_stats(args.dir)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"records: {stats['records']}  photos: {stats['photos']}")
    for title in ("by_type", "by_source", "skipped"):
        print(f"{title.replace('_', ' ')}:")
        for key, value in stats[title].items() or [("none", 0)]:
            print(f"  {key}: {value}")
    print(f"TF balance: {stats['tf_true']} true / {stats['tf_false']} false")
    print(f"OSM elements cited: {stats['osm_evidence_elements']}")
    if stats["duplicates"]:
        print(f"duplicate records: {stats['duplicates']} (counted once; rebuild with `gaea data build --overwrite`)")
    return 0
