"""``gaea osm``: list the OpenStreetMap features near a point, from an extract or Overpass."""

from __future__ import annotations

import argparse
import json
import sys

from gaea.errors import BadInputError
from gaea.osm.features import DISTINGUISHING_KEYS, OSMFeature
from gaea.osm.local import open_osm_source
from gaea.osm.overpass import OverpassSource
from gaea.osm.source import OSMSource
from gaea.types import GeoPoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaea osm",
        description="List OpenStreetMap features near a point, nearest first.",
        epilog="example: gaea osm ../shared/data/osm/west-oakland.osm.bz2 37.8076 -122.3004 --radius 300",
    )
    parser.add_argument(
        "source",
        help="an extract (.osm, .osm.bz2, .xml, .osm.pbf, .pbf), 'overpass' (the configured endpoint) "
        "or 'overpass:URL'",
    )
    parser.add_argument("lat", type=float, help="latitude in decimal degrees")
    parser.add_argument("lon", type=float, help="longitude in decimal degrees")
    parser.add_argument("--radius", type=float, default=1000.0, help="search radius in metres (default 1000)")
    parser.add_argument(
        "--keys",
        nargs="+",
        metavar="KEY",
        help=f"keep features with any of these tag keys: {', '.join(DISTINGUISHING_KEYS)}",
    )
    parser.add_argument("--limit", type=int, default=20, help="print at most this many features (default 20; 0: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON evidence record per line")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        point = GeoPoint(args.lat, args.lon)
    except ValueError as error:
        raise BadInputError(f"point ({args.lat}, {args.lon}): {error}") from error
    source = _open(args.source)
    found = source.features(point, args.radius, keys=args.keys)
    shown = found[: args.limit] if args.limit > 0 else found
    for feature in shown:
        print(json.dumps(feature.evidence(), ensure_ascii=False) if args.json else _describe(feature))
    if not args.json:
        print(f"{len(found)} features within {args.radius:g} m of {point} from {source.name}", file=sys.stderr)
    return 0


def _open(spec: str) -> OSMSource:
    if spec == "overpass":
        return OverpassSource()
    if spec.startswith("overpass:"):
        return OverpassSource(spec.removeprefix("overpass:"))
    return open_osm_source(spec)


def _describe(feature: OSMFeature) -> str:
    key, value = feature.category or ("?", "?")
    name = feature.name or "(unnamed)"
    return f"{feature.distance_m:8.0f} m  {f'{key}={value}':<32} {name}  [{feature.osm_type}/{feature.osm_id}]"
