"""Speed of OSM feature lookups and the number of Overpass requests tiling saves.

1. Radius search: ``LocalOSMSource.features_many`` (k-d tree on unit-sphere xyz, one batched
   query) against a brute-force numpy haversine scan per point, on 100,000 real gallery
   coordinates (GeoCLIP MP-16) as feature positions and the 2,997 Im2GPS3k coordinates as
   query points. Both must return the same features.
2. Reading the real extracts once, and reopening them (served from memory).
3. Overpass requests for the YFCC4k coordinates: one per ``tile_deg`` cell against one per point.

Run: ``.venv/bin/python benchmarks/osm_index.py`` (one to two minutes on 2 cores).
"""

from __future__ import annotations

import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gaea.geo import haversine_km
from gaea.osm import LocalOSMSource, OSMFeature, feature_from_element, open_osm_source
from gaea.osm.overpass import group_by_tile
from gaea.types import GeoPoint

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RADII_M = (1_000.0, 25_000.0)


def read_coordinates(path: Path, lat: str, lon: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as handle:
        rows = [(row[lat], row[lon]) for row in csv.DictReader(handle) if row[lat] and row[lon]]
    coords = np.asarray(rows, dtype=float)
    return coords[:, 0], coords[:, 1]


def brute_force(features: list[OSMFeature], queries: list[GeoPoint], radius_m: float) -> list[list[OSMFeature]]:
    """The baseline: distances to every feature for every point (vectorized), then mask, sort and copy."""
    lats = np.fromiter((f.lat for f in features), float, len(features))
    lons = np.fromiter((f.lon for f in features), float, len(features))
    results = []
    for point in queries:
        dist = haversine_km(point.lat, point.lon, lats, lons) * 1000.0
        idx = np.flatnonzero(dist <= radius_m)
        idx = idx[np.argsort(dist[idx], kind="stable")]
        results.append([replace(features[i], distance_m=float(dist[i])) for i in idx])
    return results


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def bench_radius_search() -> None:
    lats, lons = read_coordinates(DATA / "benchmarks" / "geoclip_coordinates_100K.csv", "LAT", "LON")
    points = enumerate(zip(lats, lons, strict=True))
    features = [feature_from_element("node", i, {"place": "locality"}, la, lo) for i, (la, lo) in points]
    q_lats, q_lons = read_coordinates(DATA / "benchmarks" / "im2gps3k_latlon.csv", "LAT", "LON")
    queries = [GeoPoint(la, lo) for la, lo in zip(q_lats, q_lons, strict=True)]
    source, built = timed(LocalOSMSource.from_features, features)
    print(f"radius search: {len(features):,} features (MP-16 coordinates), {len(queries):,} Im2GPS3k points")
    print(f"  index build {built:.3f} s")
    for radius in RADII_M:
        ours, ours_s = timed(source.features_many, queries, radius)
        baseline, base_s = timed(brute_force, features, queries, radius)
        hits = sum(len(found) for found in ours)
        print(f"  radius {radius / 1000:g} km ({hits:,} hits)")
        print(f"    k-d tree features_many {ours_s:8.3f} s  ({len(queries) / ours_s:,.0f} points/s)")
        print(f"    brute-force haversine  {base_s:8.3f} s  ({len(queries) / base_s:,.0f} points/s)")
        print(f"    speed-up {base_s / ours_s:.1f}x; identical results: {ours == baseline}")


def bench_extract_reading() -> None:
    print("reading the real extracts (first read, then reopen from memory):")
    for name in ("west-oakland.osm.bz2", "kirchberg-no-pois.osm", "kotka.osm.pbf"):
        path = DATA / "osm" / name
        start = time.perf_counter()
        count = len(open_osm_source(path))
        first = time.perf_counter() - start
        start = time.perf_counter()
        open_osm_source(path)
        again = time.perf_counter() - start
        print(f"  {name:24s} {count:5d} features  read {first:7.3f} s  reopen {again * 1000:7.3f} ms")


def bench_overpass_tiling() -> None:
    lats, lons = read_coordinates(DATA / "benchmarks" / "yfcc4k_latlon.csv", "LAT", "LON")
    with open(DATA / "photos" / "expected_gps.csv", newline="") as handle:
        arezzo = [(float(r["lat"]), float(r["lon"])) for r in csv.DictReader(handle) if r["place"] == "Arezzo"]
    print("Overpass requests (one per tile of nearby points vs one per point):")
    for tile_deg in (0.01, 0.05, 0.2):
        tiles = len(group_by_tile(lats, lons, tile_deg))
        saving = len(lats) / tiles
        print(f"  YFCC4k, tile_deg {tile_deg}: {tiles:,} requests vs {len(lats):,} ({saving:.2f}x fewer)")
    a_lats, a_lons = np.asarray(arezzo).T
    print(f"  Arezzo photos: {len(group_by_tile(a_lats, a_lons, 0.05))} request for {len(arezzo)} photos")


if __name__ == "__main__":
    bench_radius_search()
    bench_extract_reading()
    bench_overpass_tiling()
