"""``gaea osm near``: list the OpenStreetMap features near a point, from an extract, a feature store or
Overpass; ``gaea osm index``: build the on-disk feature store of an extract."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaea.commands.context_args import add_map_arguments, osm_from_args
from gaea.commands.parsing import CommandParser, add_command, add_commands, warn
from gaea.errors import BadInputError, ConfigError
from gaea.osm.features import DISTINGUISHING_KEYS, OSMFeature
from gaea.osm.source import OSMSource
from gaea.types import GeoPoint


def configure(parser: CommandParser) -> None:
    commands = add_commands(parser)
    near = add_command(commands, "near", run_near, help="list OpenStreetMap features near a point, nearest first",
                       examples=["gaea osm near 37.8076 -122.3004 --osm-file ../shared/data/osm/west-oakland.osm.bz2 "
                                 "--radius-m 300"])
    near.add_argument("lat", type=float, help="latitude in decimal degrees")
    near.add_argument("lon", type=float, help="longitude in decimal degrees")
    add_map_arguments(near, required=True)
    near.add_argument("--radius-m", type=float, default=1000.0, help="search radius in metres (default 1000)")
    near.alias("--radius", "--radius-m")
    near.add_argument(
        "--keys",
        nargs="+",
        metavar="KEY",
        help=f"keep features with any of these tag keys: {', '.join(DISTINGUISHING_KEYS)}",
    )
    near.add_argument("--limit", type=int, default=20, help="print at most this many features (default 20; 0: all)")
    near.add_argument("--json", action="store_true", help="print one JSON evidence record per line")
    index = add_command(
        commands, "index", run_index,
        help="build the on-disk feature store of an extract (once; reused until the extract changes)",
        description="Build the on-disk feature store of an OpenStreetMap extract, once: its features in parquet files "
        "by H3 cell, read only around the points asked about. `gaea data build`, `gaea ask` and `gaea osm near` "
        "use it for extracts of $GAEA_OSM_STORE_MIN_MB megabytes (8) or more, building it on first use; it is "
        "rebuilt when the extract changes. Give the store folder to --osm-file like an extract.",
        examples=["gaea osm index italy.osm.pbf",
                  "gaea osm index italy.osm.pbf --out /data/italy-store --memory-mb 4096"])
    index.add_argument("extract", type=Path, help="the extract (.osm, .osm.bz2, .xml, .osm.pbf, .pbf)")
    index.add_argument("--out", type=Path, metavar="DIR",
                       help="the store folder (default: EXTRACT.gaea-store beside the extract, or under "
                       "$GAEA_CACHE_DIR/osm-stores when that folder is not writable)")
    index.add_argument("--memory-mb", type=int, metavar="MB",
                       help="memory the build may use (default: $GAEA_OSM_STORE_MEMORY_MB, 1024)")
    parser.legacy_form(
        _legacy_near,
        "`gaea osm EXTRACT LAT LON` is deprecated and will be removed; use `gaea osm near LAT LON --osm-file EXTRACT`",
    )


def _legacy_near(argv: list[str]) -> list[str] | None:
    """The old `gaea osm SOURCE LAT LON [options]` as `gaea osm near LAT LON --osm-file SOURCE [options]`."""
    source = argv[0]
    if source.startswith("-"):
        return None
    if source == "overpass" or source.startswith("overpass:"):
        raise BadInputError(f"{source!r} as a source is gone: use `gaea osm near LAT LON --overpass "
                            "[--overpass-url URL]`")
    return ["near", *argv[1:], "--osm-file", source]


def run_near(args: argparse.Namespace) -> int:
    try:
        point = GeoPoint(args.lat, args.lon)
    except ValueError as error:
        raise BadInputError(f"point ({args.lat}, {args.lon}): {error}") from error
    source = osm_from_args(args)
    _check_covered(args, source, point)
    found = source.features(point, args.radius_m, keys=args.keys)
    shown = found[: args.limit] if args.limit > 0 else found
    for feature in shown:
        print(json.dumps(feature.evidence(), ensure_ascii=False) if args.json else _describe(feature))
    if not args.json:
        print(f"{len(found)} features within {args.radius_m:g} m of {point} from {source.name}", file=sys.stderr)
    return 0


def _check_covered(args: argparse.Namespace, source: OSMSource, point: GeoPoint) -> None:
    """Refuse a point whose circle misses the extract: "0 features" would read as an empty place."""
    bounds = getattr(source, "bounds", None)
    if bounds is None:
        return
    off_m = bounds.distance_m(point)
    if off_m > args.radius_m:
        raise BadInputError(f"({point}) is {off_m / 1000:,.1f} km outside {source.name}, which covers {bounds}: "
                            "it holds no data there (use another extract, or --overpass)")
    if off_m > 0:
        warn(args, f"({point}) is {off_m:,.0f} m outside {source.name} ({bounds}); only the part of the circle "
                   "inside it is listed")

def run_index(args: argparse.Namespace) -> int:
    from gaea.osm.extract import checked_extract_path
    from gaea.osm.store import FeatureStore, build_store, default_store_dir

    if args.memory_mb is not None and args.memory_mb < 16:
        raise ConfigError(f"--memory-mb must be at least 16, not {args.memory_mb}")
    target = args.out or default_store_dir(checked_extract_path(args.extract))
    before = _manifest(target)
    store = FeatureStore(build_store(args.extract, target, memory_mb=args.memory_mb, wait=False, progress=True))
    manifest = store.manifest
    size_mb = sum(path.stat().st_size for path in store.path.rglob("*") if path.is_file()) / 2**20
    done = "up to date, reused" if manifest == before else f"built in {manifest['build']['seconds']:.1f} s"
    print(f"{store.path}: {manifest['features']:,} features of {args.extract.name} in {manifest['cells']} cells, "
          f"{manifest['blocks']} blocks, {size_mb:.1f} MB ({done})")
    return 0


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "store.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(feature: OSMFeature) -> str:
    key, value = feature.category or ("?", "?")
    name = feature.name or "(unnamed)"
    return f"{feature.distance_m:8.0f} m  {f'{key}={value}':<32} {name}  [{feature.osm_type}/{feature.osm_id}]"
