"""``gaea osm near``: list the OpenStreetMap features near a point, from an extract or Overpass."""

from __future__ import annotations

import argparse
import json
import sys

from gaea.commands.context_args import add_map_arguments, osm_from_args
from gaea.commands.parsing import CommandParser, add_command, add_commands, warn
from gaea.errors import BadInputError
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


def _describe(feature: OSMFeature) -> str:
    key, value = feature.category or ("?", "?")
    name = feature.name or "(unnamed)"
    return f"{feature.distance_m:8.0f} m  {f'{key}={value}':<32} {name}  [{feature.osm_type}/{feature.osm_id}]"
