"""OpenStreetMap at scale: the on-disk feature store against the in-memory source, on extracts of growing size.

    .venv/bin/python benchmarks/osm_scale.py [--sizes 0.5M,2M] [--photos 10000] [--memory-max 10M]
                                             [--memory-mb 1024] [--work DIR]

The extracts are generated here (gaea.osm.synthetic, pyosmium writer; SYNTHETIC elements laid out like a
country: tagged POIs, buildings, roads, areas and multipolygons in city clusters at the real positions of
Italy's cities) and kept in --work for the next run. For each size, each measure in a fresh process:

1. the floor: one plain pyosmium pass over the extract (node locations, the category filter, areas);
2. today's in-memory source (`LocalOSMSource`): load time and peak RSS, then a `gaea data build` of --photos
   photos through it (one process); skipped above --memory-max nodes;
3. the store: `gaea osm index` build time, size on disk, peak RSS (total, and anonymous: the part the
   --memory-mb budget governs; file-backed pages of the on-disk node index come on top and are the
   kernel's to drop), then the same `gaea data build` through it;
4. the lookup alone (features within 1 km of every photo, with their distances), photos in manifest order
   (spread over the country, as MP-16 is) and sorted by place: ours (one ball query per photo, chunks of 64,
   as the builder runs it), the tree-against-tree query it replaced, and the baseline, a per-photo
   `cKDTree.query_ball_point` over unit-sphere coordinates plus the distances of what it finds; and the
   store's own lookup (reading its blocks).

Then the slopes per million features, the largest extract whose build stayed under 4 GB, and planning
figures for Italy-, Germany- and planet-size extracts from those slopes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaea.osm.synthetic import photo_positions, plan_cities, write_extract  # noqa: E402

RADIUS_M = 1000.0
CHUNK = 64
GB = 2**30
# Planning assumptions: nodes of the extract and the features gaea keeps from it (named or telling POIs,
# roads, areas, named or special buildings; unnamed houses are not features). Node counts from Geofabrik
# extracts in 2025; feature counts estimated at 1 feature per 20 nodes (real extracts hold far more bare way
# nodes than the synthetic ones, which keep 1 per 7.5).
PLANNING = {"Italy": (300e6, 15e6), "Germany": (560e6, 28e6), "planet": (9.5e9, 475e6)}

# Peak RSS is the kernel's VmHWM of this process (ru_maxrss would also count the parent's pages at the fork);
# anonymous memory, the part the budgets govern, is sampled every 50 ms.
_SAMPLER = """
import json, resource, sys, threading, time
def status(field):
    with open('/proc/self/status') as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(field + ':'))
peak_anon = [0]
def sample():
    while True:
        peak_anon[0] = max(peak_anon[0], status('RssAnon'))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
def report(**figures):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures['cpu_seconds'] = usage.ru_utime + usage.ru_stime
    figures['peak_rss_mb'] = status('VmHWM') / 1024
    figures['peak_anon_mb'] = max(peak_anon[0], status('RssAnon')) / 1024
    print(json.dumps(figures))
"""

_PLAIN_PASS = _SAMPLER + """
import osmium
from gaea.osm.features import CATEGORY_KEYS
started = time.perf_counter()
objects = sum(1 for _ in osmium.FileProcessor(sys.argv[1]).with_locations()
              .with_areas(osmium.filter.KeyFilter(*CATEGORY_KEYS)).with_filter(osmium.filter.KeyFilter(*CATEGORY_KEYS)))
report(seconds=time.perf_counter() - started, objects=objects)
"""

_STORE_BUILD = _SAMPLER + """
from gaea.osm.store import build_store
started = time.perf_counter()
build_store(sys.argv[1], sys.argv[2], memory_mb=int(sys.argv[3]))
report(seconds=time.perf_counter() - started)
"""

_DATA_BUILD = _SAMPLER + """
from data_pipeline.build import BuildConfig, build_dataset
from gaea.osm import open_osm_source
started, cpu_started = time.perf_counter(), time.process_time()
source = open_osm_source(sys.argv[2], store=sys.argv[4] == 'store')
loaded, loaded_cpu = time.perf_counter() - started, time.process_time() - cpu_started
after_load = status('VmHWM') / 1024
summary = build_dataset(BuildConfig(photos=sys.argv[1], out=sys.argv[3], osm_file=sys.argv[2], workers=1,
                                    hf_dataset=False, progress=False))
report(seconds=time.perf_counter() - started, load_seconds=loaded, load_cpu_seconds=loaded_cpu,
       rss_after_load_mb=after_load,
       features=len(source), records=sum(summary.records.values()), photos=summary.photos_used)
"""


def child(code: str, *args: object) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GAEA_OSM_STORE_MIN_MB": "1e12"}  # no automatic stores
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            cwd=REPO, env=env)
    if result.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def folder_mb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def photo_manifest(work: Path, nodes: int, count: int) -> Path:
    """`count` photo positions over the extract's cities (manifest order: spread out), each a link to one
    real image under its own name (a build uses a photo listed twice once)."""
    path = work / f"photos-{nodes}-{count}.csv"
    if not path.exists():
        lats, lons = photo_positions(plan_cities(nodes), count)
        images = work / "images"
        images.mkdir(exist_ok=True)
        original = images / "original.jpg"
        if not original.exists():
            shutil.copyfile(REPO.parent / "shared" / "data" / "photos" / "Canon_40D.jpg", original)
        lines = []
        for i, (lat, lon) in enumerate(zip(lats.tolist(), lons.tolist(), strict=True)):
            link = images / f"photo-{i:06d}.jpg"
            if not link.exists():
                os.link(original, link)
            lines.append(f"{link},{lat!r},{lon!r}\n")
        path.write_text("path,lat,lon\n" + "".join(lines))
    return path


# ---------------------------------------------------------------------------------------------- lookup


def store_positions(store_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every feature's point, in reading order, read from the store's columns (no features in memory)."""
    import pyarrow.parquet as pq

    table = pq.read_table(store_path / "cells", columns=["seq", "lat", "lon"]).sort_by("seq")
    return table["lat"].to_numpy(), table["lon"].to_numpy()


def best_of(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def lookup_figures(store_path: Path, lats: np.ndarray, lons: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    from gaea.geo import unit_vectors
    from gaea.osm._spatial import PointIndex, chord_of
    from gaea.osm.store import FeatureStore

    feature_lats, feature_lons = store_positions(store_path)
    index = PointIndex(feature_lats, feature_lons)
    vectors = unit_vectors(feature_lats, feature_lons)
    tree = cKDTree(vectors)
    chord = chord_of(RADIUS_M)
    photos = unit_vectors(lats, lons)
    chunks = [slice(start, start + CHUNK) for start in range(0, len(lats), CHUNK)]

    def ours() -> int:
        return sum(len(index.pairs(lats[c], lons[c], RADIUS_M).rows) for c in chunks)

    def tree_against_tree() -> int:
        return sum(len(cKDTree(photos[c]).sparse_distance_matrix(tree, chord, output_type="ndarray")) for c in chunks)

    def baseline() -> int:
        pairs = 0
        for photo in photos:
            found = tree.query_ball_point(photo, chord)
            distances = np.sqrt(((vectors[found] - photo) ** 2).sum(axis=1))
            pairs += len(distances)
        return pairs

    def through_store() -> int:
        store = FeatureStore(store_path)
        return sum(len(store.window(lats[c], lons[c], RADIUS_M).pairs.rows) for c in chunks)

    pairs = ours()
    assert pairs == tree_against_tree() == baseline() == through_store(), "every lookup must find the same pairs"
    figures = {"pairs": pairs, "features": len(feature_lats)}
    for name, fn in (("ours", ours), ("tree_against_tree", tree_against_tree), ("baseline", baseline),
                     ("store_cold", through_store)):
        figures[name] = best_of(fn, 1 if name in ("tree_against_tree", "store_cold") else 3)
    return figures


# ---------------------------------------------------------------------------------------------- run


def measure(size: int, args: argparse.Namespace) -> dict:
    work = args.work
    extract = work / f"italy-synthetic-{size}.osm.pbf"
    row: dict = {"nodes": size}
    if not extract.exists():
        started = time.perf_counter()
        write_extract(extract.with_suffix(".tmp.pbf"), size, progress=True)
        extract.with_suffix(".tmp.pbf").rename(extract)
        row["generate_s"] = time.perf_counter() - started
    row["pbf_mb"] = extract.stat().st_size / 2**20
    print(f"\n== {size:,} nodes: {extract.name}, {row['pbf_mb']:.1f} MB", flush=True)
    row["plain"] = child(_PLAIN_PASS, extract)
    print(f"   plain pyosmium pass: {row['plain']['seconds']:.1f} s ({row['plain']['cpu_seconds']:.1f} s CPU), "
          f"{row['plain']['peak_rss_mb']:.0f} MB", flush=True)

    store = work / f"store-{size}"
    if store.exists():
        shutil.rmtree(store)
    row["store"] = child(_STORE_BUILD, extract, store, args.memory_mb)
    row["store"]["mb"] = folder_mb(store)
    print(f"   store build: {row['store']['seconds']:.1f} s ({row['store']['cpu_seconds']:.1f} s CPU), "
          f"{row['store']['mb']:.1f} MB on disk, peak RSS "
          f"{row['store']['peak_rss_mb']:.0f} MB ({row['store']['peak_anon_mb']:.0f} MB anonymous)", flush=True)

    if size == args.largest:  # the same build within a quarter of the budget: memory follows the budget
        small = work / f"store-{size}-small"
        row["store_small"] = child(_STORE_BUILD, extract, small, args.memory_mb // 4)
        _remove(small)
        print(f"   store build within {args.memory_mb // 4} MB: {row['store_small']['seconds']:.1f} s, peak RSS "
              f"{row['store_small']['peak_rss_mb']:.0f} MB ({row['store_small']['peak_anon_mb']:.0f} MB anonymous)",
              flush=True)

    manifest = photo_manifest(work, size, args.photos)
    for name in ("data-store", "data-memory"):  # a build left by an interrupted run would only be resumed
        _remove(work / f"{name}-{size}")
    row["build_store"] = child(_DATA_BUILD, manifest, store, work / f"data-store-{size}", "store")
    row["features"] = row["build_store"]["features"]
    assert row["build_store"]["photos"] == args.photos, f"photos skipped: {row['build_store']}"
    print(f"   data build through the store ({row['build_store']['records']:,} records): "
          f"{row['build_store']['seconds']:.1f} s "
          f"({row['build_store']['cpu_seconds']:.1f} s CPU; {args.photos / row['build_store']['seconds']:,.0f} "
          "photos/s), peak RSS "
          f"{row['build_store']['peak_rss_mb']:.0f} MB", flush=True)
    if size <= args.memory_max:
        row["build_memory"] = child(_DATA_BUILD, manifest, extract, work / f"data-memory-{size}", "memory")
        same = (work / f"data-store-{size}" / "qa.jsonl").read_bytes() == \
            (work / f"data-memory-{size}" / "qa.jsonl").read_bytes()
        row["same_dataset"] = same
        memory = row["build_memory"]
        print(f"   in-memory source: load {memory['load_seconds']:.1f} s ({memory['load_cpu_seconds']:.1f} s CPU; RSS "
              f"{memory['rss_after_load_mb']:.0f} MB); data build {memory['seconds']:.1f} s "
              f"({memory['cpu_seconds']:.1f} s CPU; {args.photos / memory['seconds']:,.0f} photos/s), peak RSS "
              f"{memory['peak_rss_mb']:.0f} MB; datasets byte-identical: {same}", flush=True)
    for name in ("data-store", "data-memory"):
        _remove(work / f"{name}-{size}")

    row.update(lookups(size, store, args))
    return row


def lookups(size: int, store: Path, args: argparse.Namespace) -> dict:
    """The lookup alone, photos in manifest order and sorted by place (CPU time, best of three)."""
    lats, lons = photo_positions(plan_cities(size), args.photos)
    order = np.lexsort((lons, np.round(lats, 1)))  # by place: consecutive photos share their surroundings
    figures = {"lookup": lookup_figures(store, lats, lons),
               "lookup_sorted": lookup_figures(store, lats[order], lons[order])}
    for key, label in (("lookup", "manifest order"), ("lookup_sorted", "sorted by place")):
        rate = {name: args.photos / figures[key][name] for name in ("ours", "tree_against_tree", "baseline",
                                                                    "store_cold")}
        print(f"   lookup, {label} ({figures[key]['pairs'] / args.photos:,.0f} features per photo): ours "
              f"{rate['ours']:,.0f} photos/s; tree-against-tree {rate['tree_against_tree']:,.0f}; baseline "
              f"per-photo query_ball_point {rate['baseline']:,.0f} (ours {rate['ours'] / rate['baseline']:.2f}x); "
              f"the store's own, cold {rate['store_cold']:,.0f}", flush=True)
    return figures


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x; (a, b). One point: through the origin."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    b, a = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def summary(rows: list[dict], args: argparse.Namespace) -> None:
    features = [row["features"] / 1e6 for row in rows]
    nodes = [row["nodes"] / 1e6 for row in rows]
    print("\n== slopes (least squares over the sizes measured)")
    lines = {
        "store build, CPU s per M features": [row["store"]["cpu_seconds"] for row in rows],
        "store size, MB per M features": [row["store"]["mb"] for row in rows],
        "data build through the store, CPU s per M features": [row["build_store"]["cpu_seconds"] for row in rows],
    }
    fitted = {name: slope(features, values) for name, values in lines.items()}
    plain = slope(nodes, [row["plain"]["cpu_seconds"] for row in rows])
    memory_rows = [row for row in rows if "build_memory" in row]
    if memory_rows:
        mf = [row["features"] / 1e6 for row in memory_rows]
        fitted["in-memory load, CPU s per M features"] = slope(
            mf, [r["build_memory"]["load_cpu_seconds"] for r in memory_rows])
        fitted["in-memory load RSS, MB per M features"] = slope(
            mf, [r["build_memory"]["rss_after_load_mb"] for r in memory_rows])
    for name, (a, b) in fitted.items():
        print(f"   {name}: {b:,.1f} (intercept {a:,.1f})")
    print(f"   plain pyosmium pass, CPU s per M nodes: {plain[1]:.2f}")
    under = [row for row in rows if max(row["store"]["peak_rss_mb"], row["build_store"]["peak_rss_mb"]) < 4096]
    if under:
        top = max(under, key=lambda row: row["nodes"])
        print(f"\n== largest extract measured whose store build and data build stayed under 4 GB: {top['nodes']:,} "
              f"nodes ({top['features']:,} features; store build peak {top['store']['peak_rss_mb']:.0f} MB, data "
              f"build peak {top['build_store']['peak_rss_mb']:.0f} MB)")
    peaks = ", ".join(f"{row['nodes'] / 1e6:g} M nodes {row['store']['peak_rss_mb']:,.0f} MB" for row in rows)
    print(f"   store build peak RSS within {args.memory_mb} MB: {peaks}")
    small = next((row for row in rows if "store_small" in row), None)
    if small:
        print(f"   the largest again within {args.memory_mb // 4} MB: {small['store_small']['peak_rss_mb']:,.0f} MB "
              f"({small['store_small']['peak_anon_mb']:,.0f} MB anonymous): the peak follows the budget (node "
              "locations move to disk, DuckDB spills), not the extract, so a build fits 4 GB at any size")
    # The synthetic extracts hold fewer bare nodes per feature than real ones: the per-node part of each cost
    # (the pyosmium pass; the in-memory node index, 16 bytes a node) is scaled by nodes, the rest by features.
    nodes_per_feature = float(np.mean([row["nodes"] / row["features"] for row in rows]))
    per_feature_s = fitted["store build, CPU s per M features"][1] - plain[1] * nodes_per_feature
    if memory_rows:
        a_mem, b_mem = fitted["in-memory load RSS, MB per M features"]
        print(f"   in-memory source: {a_mem:,.0f} MB + {b_mem:,.0f} MB per M features: 4 GB at about "
              f"{(4096 - a_mem) / b_mem:,.1f} M features")
    print(f"\n== planning figures, in CPU time of one core (from the slopes: {plain[1]:.2f} s per M nodes for the "
          f"pyosmium pass, {per_feature_s:,.1f} s per M features for the rest; assumed node and feature counts)")
    for name, (planned_nodes, planned_features) in PLANNING.items():
        mf, mn = planned_features / 1e6, planned_nodes / 1e6
        build_s = plain[1] * mn + per_feature_s * mf
        size_gb = fitted["store size, MB per M features"][1] * mf / 1024
        line = (f"   {name}: {mn:,.0f} M nodes, {mf:,.0f} M features: store {size_gb:,.1f} GB, build about "
                f"{build_s / 3600:,.1f} h within {args.memory_mb} MB")
        if memory_rows:
            load_s = fitted["in-memory load, CPU s per M features"][1] * mf + plain[1] * (mn - nodes_per_feature * mf)
            load_gb = (a_mem + b_mem * mf + 16 * (mn - nodes_per_feature * mf)) / 1024
            line += f"; in-memory: {load_s / 3600:,.1f} h and {load_gb:,.0f} GB on every run"
        print(line)
    print(f"   queries read only the blocks around the photos: memory = the {args.memory_mb} MB cache budget + the "
          "block index (about 100 bytes per 2,048 features)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.5M,2M", help="extract sizes in nodes, e.g. 2M,10M,30M (0.5M,2M)")
    parser.add_argument("--photos", type=int, default=10_000, help="photos of each data build and lookup")
    parser.add_argument("--memory-max", default="10M", help="largest extract (nodes) to load into memory (10M)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the store build's memory budget (1024)")
    parser.add_argument("--lookup-only", action="store_true",
                        help="measure the lookup alone, on the stores a previous run left in --work")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gaea-osm-scale",
                        help="where the extracts are generated and kept between runs")
    args = parser.parse_args()
    args.memory_max = parse_size(args.memory_max)
    args.largest = max(parse_size(size) for size in args.sizes.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; store budget {args.memory_mb} MB")
    if args.lookup_only:
        for size in map(parse_size, args.sizes.split(",")):
            print(f"\n== {size:,} nodes", flush=True)
            lookups(size, args.work / f"store-{size}", args)
        return
    rows = [measure(parse_size(size), args) for size in args.sizes.split(",")]
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    summary(rows, args)


if __name__ == "__main__":
    main()
