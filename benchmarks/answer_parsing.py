"""Answer reading: `gaea.geo.parse_location` against the simple regular-expression parse of the source
papers, on the 124 real model answers of ../shared/data/answers (21 models, read by hand).

For each parser, in one run:

- stated coordinates recovered: answers stating coordinates whose parse lies within 1 km of them (97);
- invented locations: answers stating none (25) that the parser gives a location anyway;
- accuracy at 25 / 200 / 750 / 2,500 km against the photos' true positions, next to the hand reading's;
- answers parsed per second (the 124 answers, repeated).

Baselines: (1) the location-inference pipeline's own parse as stored in the file (`source_parsed_*`),
(2) the same method run here for speed: the first ``{...}`` (non-greedy) through `json.loads` with
``lat`` / ``long`` keys, else ``lat: x`` / ``long: y`` labels, as njspyx/location-inference does.

Run: .venv/bin/python benchmarks/answer_parsing.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ANSWERS = SHARED / "answers" / "location_inference_answers.jsonl"
THRESHOLDS_KM = (25, 200, 750, 2500)
Point = tuple[float, float] | None


def simple_regex_parse(text: str) -> Point:
    """The source papers' parse, re-implemented for timing: first {...} as JSON, else labelled numbers."""
    match = re.search(r"({.*?})", text, re.DOTALL)
    try:
        if match:
            data = json.loads(match.group(1))
            if "lat" in data and "long" in data:
                return float(data["lat"]), float(data["long"])
    except (ValueError, TypeError):
        lat = re.search(r"lat(?:itude)?[\s:]+(-?\d+\.?\d*)", text, re.IGNORECASE)
        lon = re.search(r"long(?:itude)?[\s:]+(-?\d+\.?\d*)", text, re.IGNORECASE)
        if lat and lon:
            return float(lat.group(1)), float(lon.group(1))
    return None


def gaea_parse(text: str) -> Point:
    from gaea.geo import parse_location

    parsed = parse_location(text)
    return None if parsed.point is None else (parsed.lat, parsed.lon)


def stored_source_parse(row: dict) -> Point:
    lat, lon = row["source_parsed_lat"], row["source_parsed_lon"]
    return None if lat is None or lon is None else (float(lat), float(lon))


def hand_reading(row: dict) -> Point:
    from gaea.geo import geocode

    if row["expected_lat"] is not None:
        return row["expected_lat"], row["expected_lon"]
    place = geocode(row["expected_place"]) if row["expected_place"] else None
    return None if place is None else (place.lat, place.lon)


def km(a: Point, b: Point) -> float:
    from gaea.geo import haversine_km

    return float("inf") if a is None or b is None else float(haversine_km(a[0], a[1], b[0], b[1]))


def figures(rows: list[dict], points: list[Point]) -> dict[str, float]:
    stated = [(row, point) for row, point in zip(rows, points, strict=True) if row["expected_lat"] is not None]
    none = [(row, point) for row, point in zip(rows, points, strict=True) if hand_reading(row) is None]
    recovered = sum(km(point, (row["expected_lat"], row["expected_lon"])) <= 1.0 for row, point in stated)
    invented = sum(point is not None for _, point in none)
    with_truth = [(row, point) for row, point in zip(rows, points, strict=True) if row["truth_lat"] is not None]
    errors = np.array([km(point, (row["truth_lat"], row["truth_lon"])) for row, point in with_truth])
    result = {"recovered": recovered, "stated": len(stated), "invented": invented, "none": len(none)}
    return result | {f"{t}km": 100.0 * float(np.mean(errors <= t)) for t in THRESHOLDS_KM}


def per_second(parse: Callable[[str], Point], texts: list[str], repeat: int) -> float:
    for text in texts:  # warm-up: the gazetteer loads on first use
        parse(text)
    start = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            parse(text)
    return repeat * len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="passes over the answers for the speed figures")
    args = parser.parse_args()
    rows = [json.loads(line) for line in ANSWERS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [row["text"] for row in rows]
    columns = {
        "hand reading": figures(rows, [hand_reading(row) for row in rows]),
        "gaea.geo.parse_location": figures(rows, [gaea_parse(text) for text in texts]),
        "source papers' parse (stored)": figures(rows, [stored_source_parse(row) for row in rows]),
        "source papers' parse (re-run)": figures(rows, [simple_regex_parse(text) for text in texts]),
    }
    with_truth = sum(row["truth_lat"] is not None for row in rows)
    print(f"{len(rows)} real answers; accuracy against the true positions of {with_truth}")
    print(f"{'':32} {'stated coords recovered':>24} {'invented':>9}" + "".join(f"{t:>9,} km" for t in THRESHOLDS_KM))
    for name, row in columns.items():
        print(
            f"{name:32} {row['recovered']:>11}/{row['stated']} ({100 * row['recovered'] / row['stated']:5.1f}%)"
            f" {row['invented']:>5}/{row['none']}" + "".join(f"{row[f'{t}km']:>11.1f}%" for t in THRESHOLDS_KM)
        )
    ours = per_second(gaea_parse, texts, args.repeat)
    baseline = per_second(simple_regex_parse, texts, args.repeat)
    print(
        f"speed: gaea.geo.parse_location {ours:,.0f} answers/s, simple regular-expression parse "
        f"{baseline:,.0f} answers/s (ratio {ours / baseline:.3f}x: the careful reading costs "
        f"{1e3 / ours - 1e3 / baseline:.2f} ms more per answer)"
    )


if __name__ == "__main__":
    main()
