"""Data pipeline benchmark: OSM attribute lookup + QA generation, memory while streaming, Overpass batching.

    .venv/bin/python benchmarks/data_pipeline.py [--photos 10000] [--baseline-photos 300] [--workers 2]

1. Throughput. Photo positions drawn at random inside the Kotka extract (../shared/data/osm/kotka.osm.pbf,
   converted to OSM XML so that osmnx can read the very same data). Ours: `data_pipeline.build.records_for_photos`
   (one k-d tree query per chunk, vectorised reverse geocoding, templates) in `--workers` processes.
   Baseline: the extract loaded once with osmnx (`features_from_xml`, representative points and tags
   prepared once), then one photo at a time: the distance to every feature in a Python loop (no spatial
   index), normalise the features within the radius, reverse-geocode the photo, and the same templates.
   Both make the same records; CPU time is reported beside wall time because the machine may be shared.
2. Memory: peak RSS of a real `build_dataset` over a manifest of 1,000 and of 10,000 positions (each run
   in a fresh process), which must stay flat because the build streams.
3. Overpass: requests the six Arezzo photos cost against a local replay server (tests/overpass_replay.py),
   batched versus one query per photo.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from data_pipeline.build import records_for_photos  # noqa: E402
from data_pipeline.context import contexts_for  # noqa: E402
from data_pipeline.generators import GenerationConfig, generate_records  # noqa: E402
from data_pipeline.inputs import Photo  # noqa: E402
from data_pipeline.lookup import FeatureTable, table_for  # noqa: E402
from gaea.osm import DISTINGUISHING_KEYS, feature_from_element, open_osm_source  # noqa: E402

RADIUS_M = 1000.0
CHUNK = 500
_STATE: dict = {}


def kotka_xml(tmp: Path) -> Path:
    """The Kotka PBF rewritten as OSM XML (pyosmium), so osmnx (baseline) and ours read the same file."""
    import osmium

    target = tmp / "kotka.osm"
    writer = osmium.SimpleWriter(str(target))
    for obj in osmium.FileProcessor(str(SHARED / "osm" / "kotka.osm.pbf")):
        writer.add(obj)
    writer.close()
    return target


def random_photos(source, count: int, seed: int = 0) -> list[Photo]:
    lats = np.array([f.lat for f in source.all_features])
    lons = np.array([f.lon for f in source.all_features])
    rng = np.random.default_rng(seed)
    plat = rng.uniform(lats.min(), lats.max(), count)
    plon = rng.uniform(lons.min(), lons.max(), count)
    return [Photo(f"{i:016x}", f"images/{i:016x}.jpg", float(a), float(b), str(i)) for i, (a, b) in
            enumerate(zip(plat, plon, strict=True))]


# ---------------------------------------------------------------------------------------------- ours


def _ours_chunk(photos: list[Photo]) -> tuple[int, float]:
    started = time.process_time()
    records = records_for_photos(photos, source=_STATE["source"], generation=_STATE["generation"],
                                 table=_STATE["table"])
    return len(records), time.process_time() - started


def run_ours(xml: Path, photos: list[Photo], workers: int) -> dict:
    source = open_osm_source(xml)
    _STATE.update(source=source, table=table_for(source),
                  generation=GenerationConfig(radius_m=RADIUS_M, source=source.name))
    contexts_for([60.5], [26.9])  # load the geocoder before forking, as the builder does
    gc.freeze()
    chunks = [photos[i:i + CHUNK] for i in range(0, len(photos), CHUNK)]
    started = time.perf_counter()
    if workers == 1:
        results = [_ours_chunk(chunk) for chunk in chunks]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_ours_chunk, chunks)
    wall = time.perf_counter() - started
    cpu = sum(cpu for _, cpu in results)
    return {"photos": len(photos), "records": sum(n for n, _ in results), "wall_s": wall, "cpu_s": cpu}


# ---------------------------------------------------------------------------------------------- baseline


def load_baseline(xml: Path) -> list[tuple[str, int, dict, float, float]]:
    """osmnx features of the extract with their representative point and tags, prepared once."""
    import osmnx

    gdf = osmnx.features_from_xml(xml, tags={key: True for key in DISTINGUISHING_KEYS})
    points = gdf.geometry.representative_point()
    tag_columns = [column for column in gdf.columns if column != "geometry"]
    rows = []
    for (element, osm_id), point, values in zip(gdf.index, points, gdf[tag_columns].itertuples(index=False),
                                                strict=True):
        tags = {key: value for key, value in zip(tag_columns, values, strict=True) if isinstance(value, str)}
        rows.append((element, int(osm_id), tags, point.y, point.x))
    return rows


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((phi2 - phi1) / 2) ** 2
         + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def run_baseline(rows: list, photos: list[Photo]) -> dict:
    generation = GenerationConfig(radius_m=RADIUS_M, source="osm-file:kotka.osm")
    records = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for photo in photos:
        near = []
        for element, osm_id, tags, lat, lon in rows:
            distance = _haversine_m(photo.lat, photo.lon, lat, lon)
            if distance <= RADIUS_M:
                feature = feature_from_element(element, osm_id, tags, lat, lon)
                if feature is not None:
                    near.append((distance, osm_id, feature))
        near.sort(key=lambda item: (item[0], item[1]))
        features = [_with_distance(feature, distance) for distance, _, feature in near]
        context = contexts_for([photo.lat], [photo.lon])[0]  # reverse geocoding one photo at a time
        _, nearby = FeatureTable.from_results([features])
        records += len(generate_records([photo], nearby, [context], generation))
    return {"photos": len(photos), "records": records, "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started}


def _with_distance(feature, distance: float):
    from dataclasses import replace

    return replace(feature, distance_m=distance)


# ---------------------------------------------------------------------------------------------- memory


_MEMORY_CHILD = """
import json, resource, sys
from data_pipeline.build import BuildConfig, build_dataset
config = BuildConfig(photos=sys.argv[1], out=sys.argv[2], osm_file=sys.argv[3], chunk_size=256, workers=1,
                     hf_dataset=False, progress=False)
summary = build_dataset(config)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "records": sum(summary.records.values()), "seconds": summary.seconds}))
"""


def peak_rss_of_build(tmp: Path, xml: Path, photos: list[Photo], image: Path) -> dict:
    manifest = tmp / f"manifest-{len(photos)}.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lat", "lon"])
        for photo in photos:
            link = tmp / "imgs" / f"{photo.photo_id}.jpg"
            if not link.exists():
                os.link(image, link)
            writer.writerow([str(link), photo.lat, photo.lon])
    out = tmp / f"build-{len(photos)}"
    result = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(manifest), str(out), str(xml)],
                            capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- overpass


def overpass_requests(tmp: Path) -> tuple[int, int]:
    sys.path.insert(0, str(REPO / "tests"))
    from overpass_replay import OverpassReplayServer

    from data_pipeline.inputs import read_exif_gps
    from gaea.osm import OverpassSource
    from gaea.types import GeoPoint

    with open(SHARED / "photos" / "expected_gps.csv", newline="") as handle:
        names = [row["file"] for row in csv.DictReader(handle) if row["place"] == "Arezzo"]
    points = [GeoPoint(*read_exif_gps(SHARED / "photos" / name)) for name in names]
    with OverpassReplayServer(SHARED / "overpass" / "json" / "way-03.json") as server:
        OverpassSource(server.url, cache_dir=tmp / "cache", min_interval_s=0.0).features_many(points, RADIUS_M)
        batched = len(server.requests)
    with OverpassReplayServer(SHARED / "overpass" / "json" / "way-03.json") as server:
        for index, point in enumerate(points):  # no batching: each photo its own query (own cache, no sharing)
            OverpassSource(server.url, cache_dir=tmp / f"cache-{index}", min_interval_s=0.0).features(point, RADIUS_M)
        per_photo = len(server.requests)
    return batched, per_photo


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--baseline-photos", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        xml = kotka_xml(tmp)
        source = open_osm_source(xml)
        photos = random_photos(source, args.photos)
        print(f"extract: Kotka ({len(source.all_features)} features), radius {RADIUS_M:.0f} m, "
              f"{args.photos} positions")

        one = run_ours(xml, photos, 1)
        many = run_ours(xml, photos, args.workers)
        base = run_baseline(load_baseline(xml), photos[: args.baseline_photos])
        ours_rate, base_rate = one["photos"] / one["cpu_s"], base["photos"] / base["cpu_s"]
        print("\n1. attribute lookup + QA generation")
        print(f"   ours, 1 process:  {one['photos'] / one['wall_s']:8.0f} photos/s wall, "
              f"{ours_rate:8.0f} photos per CPU-second ({one['records']} records)")
        print(f"   ours, {args.workers} processes: {many['photos'] / many['wall_s']:8.0f} photos/s wall, "
              f"{many['photos'] / many['cpu_s']:8.0f} photos per CPU-second")
        print(f"   baseline (osmnx + per-photo scan of every feature), {base['photos']} photos: "
              f"{base['photos'] / base['wall_s']:6.1f} photos/s wall, {base_rate:6.1f} photos per CPU-second")
        print(f"   speed-up, CPU time, one process each: {ours_rate / base_rate:.0f}x "
              f"(wall: {(one['photos'] / one['wall_s']) / (base['photos'] / base['wall_s']):.0f}x)")
        print(f"   {args.workers}-process throughput (CPU-bound): {args.workers * many['photos'] / many['cpu_s']:.0f}"
              " photos/s on uncontended cores")

        image = SHARED / "photos" / "Canon_40D.jpg"
        (tmp / "imgs").mkdir()
        small = peak_rss_of_build(tmp, xml, photos[:1000], image)
        large = peak_rss_of_build(tmp, xml, photos[:10_000] if len(photos) >= 10_000 else photos, image)
        print("\n2. memory of a streaming build (peak RSS of a fresh process)")
        print(f"   1,000 photos:  {small['peak_rss_mb']:7.1f} MB ({small['records']} records, "
              f"{small['seconds']:.1f} s)")
        print(f"   {len(photos[:10_000]):,} photos: {large['peak_rss_mb']:7.1f} MB ({large['records']} records, "
              f"{large['seconds']:.1f} s)")
        print(f"   ratio 10k/1k: {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")

        batched, per_photo = overpass_requests(tmp)
        print("\n3. Overpass batching, the six Arezzo photos")
        print(f"   batched by tile: {batched} request(s); one query per photo: {per_photo} requests")


if __name__ == "__main__":
    main()
