"""Galleries beyond memory and distributed runs, each side measured next to its baseline in one run.

Part ``faiss``: the memory of a gallery index per 10M vectors, the on-disk inverted lists (``ivf-disk``)
against the in-memory fast-scan index (``ivfpq``). Both are built by ``VectorIndex.build`` from the same
memory-mapped file of clustered synthetic 768-dimensional vectors (``ClusteredSphere`` of
``benchmarks/retrieval.py``: real image embeddings vary along few directions), each in a fresh process
so that its memory is its own: the peak anonymous memory, sampled during the build (the peak RSS also
counts the pages of the memory-mapped vectors, evictable page cache). Then each is opened in a fresh
process and searched one query at a time (16 similar, 16 dissimilar, re-ranked against the
memory-mapped vectors). Reported per index: build time and memory, anonymous (non-evictable) memory
once opened and after the queries, the lists-file pages the queries mapped (page cache), ms per query
and of the every-list scan alone, recall@16 against exact search. The figures per 10M vectors are
extrapolated from the measured size, linearly in the vectors (labelled as such); the fixed part of the
on-disk index (coarse centroids, quantizer ranges, list table) is computed for the inverted lists a
10M gallery gets.

Part ``runs``: photos per second of `gaea data build` (the Kotka extract, photos at positions around its
features, listed in a manifest) and of `gaea gallery build` (the shared photos under many ids, the tiny
CLIP encoder of `gaea.models.tiny`), each in this process and then on a Dask cluster of ``--workers``
local processes (started once, its start timed apart; the first parts include each worker's loading of
the extract or encoder). Both outputs are checked equal byte for byte.

Part ``eval``: photos per second of `gaea eval geo --images` with the tiny VLM of `gaea.models.tiny` in the
workers (the shared geotagged photos linked under many ids), in this process and on the cluster, after a
warm-up on each side; ``predictions.jsonl`` is checked equal byte for byte.

Run: ``.venv/bin/python benchmarks/scale_out.py`` (quick default: 200,000 vectors, 3,000 dataset photos,
256 gallery photos, 32 evaluated photos; a few minutes and under 2 GB); ``--vectors 1000000`` for a larger
measurement, ``--only faiss`` / ``--only runs`` / ``--only eval`` for one part.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # both sides on one core: a fair comparison on a shared machine

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

from retrieval import ClusteredSphere, recall  # noqa: E402

from gaea.retrieval.index import VectorIndex, inverted_lists_for  # noqa: E402

DIM, K, TEN_MILLION = 768, 16, 10_000_000
KINDS = ("ivfpq", "ivf-disk")


# -- measured in child processes ------------------------------------------------------------------------


def _anonymous_bytes() -> int:
    """This process's resident anonymous memory (heap; what cannot be evicted to the files it came from)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Anonymous line in /proc/self/smaps_rollup")


def _resident_bytes_of(path: Path) -> int:
    """Bytes of ``path`` mapped and resident in this process (page cache it uses, evictable)."""
    import psutil

    target = str(path.resolve())
    return sum(region.rss for region in psutil.Process().memory_maps(grouped=True) if region.path == target)


class PeakAnonymous:
    """The highest anonymous memory of this process while the block runs, sampled every 20 ms (the peak RSS
    would also count the pages of the memory-mapped vectors, which are page cache)."""

    def __enter__(self) -> PeakAnonymous:
        self.peak, self._stop = _anonymous_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _anonymous_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_build(kind: str, workdir: Path) -> dict[str, float]:
    vectors = np.load(workdir / "vectors.npy", mmap_mode="r")
    out = workdir / kind
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    with PeakAnonymous() as peak:
        index = VectorIndex.build(vectors, kind=kind, lists_file=out / "index.ivfdata")
    build_s = time.perf_counter() - start
    index.save(out / "index.faiss")
    lists = index.lists_file
    return {"build_s": build_s, "build_peak_anonymous": peak.peak,
            "build_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "memory_bytes": index.memory_bytes(), "lists_bytes": lists.stat().st_size if lists else 0}


def child_query(kind: str, workdir: Path) -> dict[str, object]:
    import faiss

    vectors = np.load(workdir / "vectors.npy", mmap_mode="r")
    queries = np.load(workdir / "queries.npy")
    before = _anonymous_bytes()
    index = VectorIndex.load(workdir / kind / "index.faiss")
    index.attach_vectors(vectors)
    opened = _anonymous_bytes()
    nlist = faiss.extract_index_ivf(index.index).nlist
    every_list = faiss.SearchParametersIVF(nprobe=nlist)
    similar, dissimilar, similar_ms, dissimilar_ms, scan_ms = [], [], [], [], []
    for query in queries:
        start = time.perf_counter()
        similar.append(index.search(query, K)[1][0])
        middle = time.perf_counter()
        dissimilar.append(index.search_dissimilar(query, K)[1][0])
        end = time.perf_counter()
        # The every-list scan alone (it grows with the gallery; the exact re-ranking of its shortlist does not).
        index.index.search(-query[None, :], K * index.params.dissimilar_k_factor, params=every_list)
        similar_ms.append(1000 * (middle - start))
        dissimilar_ms.append(1000 * (end - middle))
        scan_ms.append(1000 * (time.perf_counter() - end))
    lists = index.lists_file
    return {"anonymous_opened": opened - before, "anonymous_after": _anonymous_bytes() - before,
            "lists_pages": _resident_bytes_of(lists) if lists else 0,
            "similar_ms": float(np.median(similar_ms)), "dissimilar_ms": float(np.median(dissimilar_ms)),
            "scan_ms": float(np.median(scan_ms)), "nlist": nlist,
            "similar": np.array(similar).tolist(), "dissimilar": np.array(dissimilar).tolist()}


def _in_child(step: str, kind: str, workdir: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", step, kind, str(workdir)], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the run --------------------------------------------------------------------------------------------


def write_vectors(workdir: Path, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """The gallery vectors (written to a file in chunks) and the exact neighbours of the queries."""
    data = ClusteredSphere()
    queries = data.sample(n_queries, np.random.default_rng(2))
    np.save(workdir / "queries.npy", queries)
    similarities = np.empty((n_queries, n), dtype=np.float32)
    with open(workdir / "vectors.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (n, DIM)})
        start = 0
        for vectors in data.chunks(n, 50_000, seed=1):
            handle.write(vectors.tobytes())
            similarities[:, start:start + len(vectors)] = queries @ vectors.T
            start += len(vectors)
    order = np.argsort(similarities, axis=1)
    return order[:, ::-1][:, :K], order[:, :K]


def faiss_memory(n: int, n_queries: int, workdir: Path) -> dict[str, dict]:
    print(f"writing {n:,} clustered vectors of dimension {DIM} and the exact neighbours of {n_queries} queries ...")
    true_similar, true_dissimilar = write_vectors(workdir, n, n_queries)
    results = {}
    for kind in KINDS:
        print(f"building and querying {kind} (fresh processes) ...")
        built, queried = _in_child("build", kind, workdir), _in_child("query", kind, workdir)
        queried["recall_similar"] = recall(np.array(queried.pop("similar")), true_similar)
        queried["recall_dissimilar"] = recall(np.array(queried.pop("dissimilar")), true_dissimilar)
        results[kind] = built | queried
    return results


def disk_fixed_bytes_at(n: int) -> int:
    """Resident bytes of an ivf-disk index of ``n`` vectors: coarse centroids, the 4-bit scalar quantizer's
    range per dimension and the on-disk lists' table (offset, size, capacity per list)."""
    nlist = inverted_lists_for(n)
    return nlist * DIM * 4 + 2 * DIM * 4 + nlist * 24


def report_faiss(n: int, results: dict[str, dict]) -> None:
    memory, disk = results["ivfpq"], results["ivf-disk"]
    scale = TEN_MILLION / n
    mb = 1e6
    print(f"\nFAISS gallery indexes, {n:,} x {DIM} vectors, one thread, one query at a time")
    print(f"{'':38}{'ivfpq (in memory)':>20}{'ivf-disk':>14}")
    rows = [
        ("build time, s", "build_s", 1, ".1f"),
        ("build peak anonymous memory, MB", "build_peak_anonymous", mb, ".0f"),
        ("build peak RSS (+ mapped vectors), MB", "build_peak_rss", mb, ".0f"),
        ("index in memory (serialized), MB", "memory_bytes", mb, ".1f"),
        ("lists file on disk, MB", "lists_bytes", mb, ".1f"),
        ("anonymous memory once opened, MB", "anonymous_opened", mb, ".1f"),
        ("anonymous memory after queries, MB", "anonymous_after", mb, ".1f"),
        ("lists file pages mapped by queries, MB", "lists_pages", mb, ".1f"),
        ("similar search, ms/query", "similar_ms", 1, ".2f"),
        ("dissimilar search, ms/query", "dissimilar_ms", 1, ".1f"),
        ("  of which the every-list scan, ms", "scan_ms", 1, ".1f"),
        ("recall@16 similar", "recall_similar", 1, ".3f"),
        ("recall@16 dissimilar", "recall_dissimilar", 1, ".3f"),
    ]
    for label, key, unit, spec in rows:
        print(f"{label:38}{memory[key] / unit:>20{spec}}{disk[key] / unit:>14{spec}}")
    in_memory_10m = memory["anonymous_opened"] * scale
    disk_10m = disk_fixed_bytes_at(TEN_MILLION)
    rerank = {kind: results[kind]["dissimilar_ms"] - results[kind]["scan_ms"] for kind in KINDS}
    print(f"\nper 10M vectors (extrapolated linearly in the vectors from {n:,}; the re-ranking stays per query):")
    print(f"  ivfpq       in memory {in_memory_10m / 1e9:.2f} GB; dissimilar search "
          f"~{memory['scan_ms'] * scale + rerank['ivfpq']:.0f} ms per query on one core")
    print(f"  ivf-disk    in memory {disk_10m / mb:.1f} MB (centroids and list table of the "
          f"{inverted_lists_for(TEN_MILLION)} lists a 10M gallery gets; measured "
          f"{disk['anonymous_opened'] / mb:.1f} MB at {n:,}); lists file {disk['lists_bytes'] * scale / 1e9:.2f} GB on "
          f"disk, of which a similar query reads 16 lists, ~{disk['lists_bytes'] * scale * 16 / 1024 / mb:.0f} MB; "
          f"dissimilar search ~{(disk['scan_ms'] * scale + rerank['ivf-disk']) / 1000:.1f} s per query on one core")
    print(f"  memory in-memory / on-disk at 10M: {in_memory_10m / disk_10m:.0f}x less on disk")
    print(f"  both: embeddings.npy {TEN_MILLION * DIM * 4 / 1e9:.1f} GB on disk, memory-mapped (re-ranking reads "
          "only the shortlisted rows)")


# -- part runs: photos per second in one process and on a local Dask cluster ---------------------------


def _manifest(path: Path, rows: list[tuple[str, Path, float, float]]) -> Path:
    path.write_text("id,path,lat,lon\n" + "".join(f"{key},{image},{lat},{lon}\n" for key, image, lat, lon in rows))
    return path


def run_throughput(photos: int, gallery_photos: int, workers: int, workdir: Path) -> dict[str, float]:
    from data_pipeline.build import BuildConfig, build_dataset
    from gaea.distributed import cluster
    from gaea.exif import read_exif_gps
    from gaea.models.tiny import build_tiny_encoder
    from gaea.osm import open_osm_source
    from gaea.retrieval import Embedder, build_gallery

    shared = REPO.parent / "shared" / "data"
    extract = shared / "osm" / "kotka.osm.pbf"
    features = open_osm_source(extract).all_features
    rng = np.random.default_rng(3)
    pictures = sorted(p for p in (shared / "photos").glob("DSCN*.jpg"))
    chosen = rng.integers(0, len(features), photos)
    dataset_rows = [(f"p{n}", pictures[n % len(pictures)], features[i].lat + rng.uniform(-3e-4, 3e-4),
                     features[i].lon + rng.uniform(-3e-4, 3e-4)) for n, i in enumerate(chosen)]
    dataset_manifest = _manifest(workdir / "dataset.csv", dataset_rows)
    geotagged = [(p, *read_exif_gps(p)) for p in pictures]
    gallery_manifest = _manifest(workdir / "gallery.csv", [(f"g{n}", *geotagged[n % len(geotagged)])
                                                           for n in range(gallery_photos)])
    encoder = build_tiny_encoder(workdir / "encoder")
    embedder = Embedder(encoder, batch_size=8)

    def data_build(out: str, scheduler: str | None = None, manifest: Path = dataset_manifest) -> float:
        config = BuildConfig(photos=str(manifest), out=workdir / out, osm_file=str(extract), chunk_size=64,
                             hf_dataset=False, progress=False, scheduler=scheduler)
        start = time.perf_counter()
        build_dataset(config)
        return time.perf_counter() - start

    def gallery_build(out: str, client=None, manifest: Path = gallery_manifest) -> float:
        start = time.perf_counter()
        build_gallery(manifest, workdir / out, embedder, chunk_size=16, show_progress=False, client=client)
        return time.perf_counter() - start

    # Warm-ups (a few photos): each side loads the extract, geocoder and encoder once, as a long run does.
    small_data = _manifest(workdir / "warm-data.csv", dataset_rows[:128])
    small_gallery = _manifest(workdir / "warm-gallery.csv", [(f"w{n}", *geotagged[n % len(geotagged)])
                                                             for n in range(32)])
    figures = {"data_warm_plain_s": data_build("warm-data-plain", manifest=small_data),
               "gallery_warm_plain_s": gallery_build("warm-gallery-plain", manifest=small_gallery)}
    figures |= {"data_plain_s": data_build("data-plain"), "gallery_plain_s": gallery_build("gallery-plain")}
    start = time.perf_counter()
    with cluster(workers=workers) as client:
        figures["cluster_start_s"] = time.perf_counter() - start
        figures["data_warm_cluster_s"] = data_build("warm-data-cluster", client.scheduler.address, small_data)
        figures["gallery_warm_cluster_s"] = gallery_build("warm-gallery-cluster", client, small_gallery)
        figures["data_cluster_s"] = data_build("data-cluster", client.scheduler.address)
        figures["gallery_cluster_s"] = gallery_build("gallery-cluster", client)
    for plain, on_cluster in (("data-plain/qa.jsonl", "data-cluster/qa.jsonl"),
                              ("gallery-plain/embeddings.npy", "gallery-cluster/embeddings.npy")):
        if (workdir / plain).read_bytes() != (workdir / on_cluster).read_bytes():
            raise SystemExit(f"{on_cluster} differs from {plain}: the cluster's result is not the plain run's")
    return figures


def report_runs(photos: int, gallery_photos: int, workers: int, figures: dict[str, float]) -> None:
    print(f"\nruns in one process and on a local Dask cluster of {workers} worker processes, after a warm-up run "
          "on each side; outputs equal byte for byte")
    print(f"  cluster start {figures['cluster_start_s']:.1f} s; warm-up (loading extract, geocoder, encoder): data "
          f"{figures['data_warm_plain_s']:.1f} s here, {figures['data_warm_cluster_s']:.1f} s on the cluster; "
          f"gallery {figures['gallery_warm_plain_s']:.1f} s here, {figures['gallery_warm_cluster_s']:.1f} s there")
    print(f"{'':34}{'one process':>14}{f'{workers} workers':>14}{'ratio':>8}")
    for label, key, count in (("data build, photos/s", "data", photos), ("gallery build, photos/s", "gallery",
                                                                           gallery_photos)):
        plain, on_cluster = count / figures[f"{key}_plain_s"], count / figures[f"{key}_cluster_s"]
        print(f"{label:34}{plain:14.0f}{on_cluster:14.0f}{on_cluster / plain:7.2f}x")


def eval_throughput(photos: int, workers: int, workdir: Path) -> dict[str, float]:
    import contextlib
    import io

    from gaea.cli import main as gaea
    from gaea.distributed import cluster
    from gaea.exif import read_exif_gps
    from gaea.models.tiny import build_tiny_vlm

    pictures = sorted((REPO.parent / "shared" / "data" / "photos").glob("DSCN*.jpg"))
    folder = workdir / "eval-photos"
    folder.mkdir()
    rows = []
    for n in range(photos):
        (folder / f"e{n}.jpg").symlink_to(pictures[n % len(pictures)])
        rows.append((f"e{n}.jpg", *read_exif_gps(pictures[n % len(pictures)])))
    truths = {}
    for name, chosen in (("warm", rows[:4]), ("all", rows)):
        truths[name] = workdir / f"eval-{name}.csv"
        truths[name].write_text("id,lat,lon\n" + "".join(f"{key},{lat},{lon}\n" for key, lat, lon in chosen))
    vlm = build_tiny_vlm(workdir / "vlm")

    def geo(out: str, truth: str, *extra: str) -> float:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = gaea(["eval", "geo", "--truth", str(truths[truth]), "--images", str(folder), "--model", str(vlm),
                         "--max-new-tokens", "8", "--out", str(workdir / out), *extra])
        if code:
            raise SystemExit(f"gaea eval geo --out {out} failed ({code})")
        return time.perf_counter() - start

    figures = {"eval_warm_plain_s": geo("eval-warm-plain", "warm"), "eval_plain_s": geo("eval-plain", "all")}
    with cluster(workers=workers) as client:
        figures["eval_warm_cluster_s"] = geo("eval-warm-cluster", "warm", "--scheduler", client.scheduler.address)
        figures["eval_cluster_s"] = geo("eval-cluster", "all", "--scheduler", client.scheduler.address)
    plain, on_cluster = (workdir / f"eval-{side}" / "predictions.jsonl" for side in ("plain", "cluster"))
    if plain.read_bytes() != on_cluster.read_bytes():
        raise SystemExit("the cluster's predictions.jsonl differs from the plain run's")
    return figures


def report_eval(photos: int, workers: int, figures: dict[str, float]) -> None:
    print(f"\ngaea eval geo --images, tiny VLM, {photos} photos, in one process and on a local Dask cluster of "
          f"{workers} worker processes; predictions equal byte for byte")
    print(f"  warm-up (4 photos; loading torch, the model, the geocoder): {figures['eval_warm_plain_s']:.1f} s here, "
          f"{figures['eval_warm_cluster_s']:.1f} s on the cluster")
    plain, on_cluster = photos / figures["eval_plain_s"], photos / figures["eval_cluster_s"]
    print(f"{'':34}{'one process':>14}{f'{workers} workers':>14}{'ratio':>8}")
    print(f"{'eval geo, photos/s':34}{plain:14.2f}{on_cluster:14.2f}{on_cluster / plain:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("faiss", "runs", "eval"), help="run one part (default: all)")
    parser.add_argument("--vectors", type=int, default=200_000, help="gallery vectors of the FAISS part")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--photos", type=int, default=3000, help="dataset photos of the runs part")
    parser.add_argument("--gallery-photos", type=int, default=256, help="gallery photos of the runs part")
    parser.add_argument("--eval-photos", type=int, default=32, help="photos of the eval part")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "KIND", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, kind, workdir = args.child
        result = (child_build if step == "build" else child_query)(kind, Path(workdir))
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="gaea-bench-distributed-") as tmp:
        if args.only in (None, "faiss"):
            report_faiss(args.vectors, faiss_memory(args.vectors, args.queries, Path(tmp)))
        if args.only in (None, "runs"):
            figures = run_throughput(args.photos, args.gallery_photos, args.workers, Path(tmp))
            report_runs(args.photos, args.gallery_photos, args.workers, figures)
        if args.only in (None, "eval"):
            report_eval(args.eval_photos, args.workers, eval_throughput(args.eval_photos, args.workers, Path(tmp)))


if __name__ == "__main__":
    main()
