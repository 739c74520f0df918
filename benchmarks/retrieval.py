"""Retrieval benchmark: our compressed index against the exact flat search Img2Loc uses, in one run.

Part 1, 1,000,000 clustered synthetic vectors of dimension 768 (float32, generated in chunks): a mixture
of 1,000 Gaussian clusters on the unit sphere, each with its own 32-dimensional spread (real image
embeddings vary along few directions) plus isotropic noise and a shared mean direction (CLIP embeddings
are not centred). Queries are fresh draws from the same mixture. We report, for 16 similar and 16
dissimilar neighbours, recall@16 of the compressed index (``VectorIndex`` kind ``ivfpq``) against exact
search, the time per query (one query at a time, as `locate` asks) of both, and the memory of both. The
flat search and the default compressed one are timed alternately, query by query, so that both see the
same load on a shared machine; each setting is also timed alone over all the queries.

Part 2, end-to-end retrieval overhead of ``Assistant.locate`` on a 100,000-photo gallery (coordinates
from GeoCLIP's MP-16 gallery, synthetic embeddings), with model generation excluded: a backend that
answers instantly, so the time is image loading, embedding (a tiny random CLIP with 768-dimensional output), similar and
dissimilar search (768-dimensional embeddings, the index `auto` picks), neighbour
metadata and place names, prompt rendering and answer parsing.

Run: ``.venv/bin/python benchmarks/retrieval.py`` (about 5 minutes, under 8 GB of RAM; single-threaded
so that both sides get the same CPU, plus one flat-vs-compressed timing with FAISS's default thread count
on both sides, one query at a time, as a user gets it). ``--vectors 200000`` for a quicker run.
"""

from __future__ import annotations

import os

#: FAISS's default OpenMP thread count, as a user gets it (OMP_NUM_THREADS, else the usable cores), read
#: before the pin below; the flat-vs-compressed timing is also done at this count, nq=1.
DEFAULT_THREADS = int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
# One thread for FAISS, BLAS and torch, set before they load: both sides get the same CPU, and OpenMP
# spinning on a shared machine does not distort the timings.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from itertools import islice  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from gaea.retrieval.index import SearchParams, VectorIndex  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DIM = 768
K = 16
#: Search settings measured: the default (dissimilar shortlist 512), and longer dissimilar shortlists.
SETTINGS = (SearchParams(), SearchParams(dissimilar_k_factor=64), SearchParams(nprobe=32, dissimilar_k_factor=128))


class ClusteredSphere:
    """A mixture of Gaussians on the unit sphere with per-cluster low-rank spread (see the module doc)."""

    def __init__(self, *, dim: int = DIM, clusters: int = 1000, rank: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.clusters, self.rank = dim, clusters, rank
        self.centres = _unit(rng.standard_normal((clusters, dim)).astype(np.float32))
        self.mean = _unit(rng.standard_normal(dim).astype(np.float32))
        self.bases = (rng.standard_normal((clusters, rank, dim)) / np.sqrt(rank * dim)).astype(np.float32)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = np.sort(rng.integers(0, self.clusters, n))
        vectors = self.centres[labels] + 0.7 * self.mean
        vectors += rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(0.2 / np.sqrt(self.dim))
        latent = rng.standard_normal((n, self.rank), dtype=np.float32)
        bounds = np.searchsorted(labels, np.arange(self.clusters + 1))
        for cluster in range(self.clusters):
            start, stop = bounds[cluster], bounds[cluster + 1]
            vectors[start:stop] += 0.8 * latent[start:stop] @ self.bases[cluster]
        return _unit(vectors[rng.permutation(n)])

    def chunks(self, n: int, chunk: int, *, seed: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        for start in range(0, n, chunk):
            yield self.sample(min(chunk, n - start), rng)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def _seconds(search, query: np.ndarray) -> float:
    start = time.perf_counter()
    search(query[None, :])
    return time.perf_counter() - start


def per_query_ms(search, queries: np.ndarray) -> float:
    """Median milliseconds of one search call per query, one query at a time."""
    return 1000 * float(np.median([_seconds(search, query) for query in queries]))


def paired_ms(baseline, ours, queries: np.ndarray) -> tuple[float, float]:
    """Median milliseconds per query of ``baseline`` and ``ours``, timed alternately on the same queries.

    Alternating query by query means both sides see the same load from other processes on a shared machine,
    so their ratio is fair even when the absolute times drift.
    """
    times = np.array([(_seconds(baseline, query), _seconds(ours, query)) for query in queries])
    return tuple(1000 * np.median(times, axis=0))


def index_benchmark(n: int, n_queries: int, timed_flat: int, workdir: Path) -> dict[str, float]:
    data = ClusteredSphere()
    chunk = 50_000
    vectors_path = workdir / "vectors.npy"
    flat = faiss.IndexFlatIP(DIM)
    print(f"generating {n:,} clustered vectors of dimension {DIM} ...")
    # Written with plain file writes (not a writable memmap), so the file does not count in our memory.
    with open(vectors_path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (n, DIM)})
        for vectors in tqdm(data.chunks(n, chunk, seed=1), total=-(-n // chunk), unit="chunk"):
            handle.write(vectors.tobytes())
            flat.add(vectors)
    stored = np.load(vectors_path, mmap_mode="r")
    queries = data.sample(n_queries, np.random.default_rng(2))

    print("exact ground truth (batched flat search) ...")
    _, true_similar = flat.search(queries, K)
    _, true_dissimilar = flat.search(-queries, K)

    print("building the compressed index ...")
    start = time.perf_counter()
    compressed = VectorIndex.create(DIM, n, kind="ivfpq")
    compressed.train(stored[np.sort(np.random.default_rng(3).choice(n, 40_000, replace=False))])
    for begin in tqdm(range(0, n, chunk), unit="chunk"):
        compressed.add(stored[begin: begin + chunk])
    build_s = time.perf_counter() - start
    compressed.attach_vectors(stored)  # searches read the rows they re-rank from the file, memory-mapped
    print(f"  {compressed.index.__class__.__name__} built in {build_s:.0f} s")

    results = {"build_s": build_s}
    for params in SETTINGS:
        compressed.set_params(params)
        _, similar = compressed.search(queries, K)
        _, dissimilar = compressed.search_dissimilar(queries, K)
        results[f"recall_similar_{params}"] = recall(similar, true_similar)
        results[f"recall_dissimilar_{params}"] = recall(dissimilar, true_dissimilar)
        results[f"ms_{params}"] = per_query_ms(
            lambda q: (compressed.search(q, K), compressed.search_dissimilar(q, K)), queries)
    compressed.set_params(SETTINGS[0])
    results["ms_flat"], results["ms_paired"] = paired_ms(
        lambda q: (flat.search(q, K), flat.search(-q, K)),
        lambda q: (compressed.search(q, K), compressed.search_dissimilar(q, K)), queries[:timed_flat])
    # The same alternating timing with FAISS's default thread count on both sides (BLAS stays at one thread):
    # the latency a user gets. IndexFlatIP runs a single query on one thread; our every-list scan splits
    # the lists of its every-list dissimilar scan over the threads (FAST_SCAN_IMPLEM_THREADED, index.py).
    faiss.omp_set_num_threads(DEFAULT_THREADS)
    results["ms_flat_threads"], results["ms_paired_threads"] = paired_ms(
        lambda q: (flat.search(q, K), flat.search(-q, K)),
        lambda q: (compressed.search(q, K), compressed.search_dissimilar(q, K)), queries[:timed_flat])
    faiss.omp_set_num_threads(1)
    results["bytes_flat"] = flat.ntotal * flat.d * 4
    results["bytes_compressed"] = compressed.memory_bytes()
    return results


def coordinates(n: int) -> np.ndarray:
    with open(SHARED / "benchmarks" / "geoclip_coordinates_100K.csv", newline="") as handle:
        rows = [(float(row["LAT"]), float(row["LON"])) for row in islice(csv.DictReader(handle), n)]
    return np.array(rows)


class InstantBackend:
    """A backend that answers at once, so that timing `locate` measures everything but generation."""

    name = "instant"

    def generate(self, messages, *, params=None) -> str:
        return '{"latitude": 43.4674, "longitude": 11.8851, "city": "Arezzo", "country": "Italy", "reasoning": "x"}'

    def stream(self, messages, *, params=None):
        yield self.generate(messages, params=params)


def tiny_clip_768(out_dir: Path) -> Path:
    """A tiny random CLIP whose image embeddings have 768 dimensions, like CLIP ViT-L/14's, so that the
    gallery search costs what it would with the real encoder (the encoder itself is tiny)."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = CLIPConfig(
        text_config={"vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32},
        vision_config={"image_size": 64, "patch_size": 16, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=DIM,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out_dir)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(out_dir)
    return out_dir


def locate_overhead(workdir: Path, repeats: int) -> dict[str, float]:
    from gaea.assistant import Assistant
    from gaea.retrieval import Embedder, Gallery, Retriever

    encoder = Embedder(tiny_clip_768(workdir / "encoder"))
    coords = coordinates(100_000)
    rng = np.random.default_rng(4)
    # Embeddings that follow geography (random Fourier features of the 3-D point) plus noise.
    lat, lon = np.radians(coords[:, 0]), np.radians(coords[:, 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    frequencies = rng.standard_normal((3, encoder.dim)) * rng.uniform(0.5, 8.0, encoder.dim)
    embeddings = np.cos(xyz @ frequencies + rng.uniform(0, 2 * np.pi, encoder.dim))
    embeddings = _unit((embeddings + 0.05 * rng.standard_normal(embeddings.shape)).astype(np.float32))
    print("writing a 100,000-photo gallery (place names by offline reverse geocoding) ...")
    start = time.perf_counter()
    gallery = Gallery.from_arrays(workdir / "gallery", embeddings, coords[:, 0], coords[:, 1],
                                  encoder=encoder.model_name)
    build_s = time.perf_counter() - start
    assistant = Assistant(InstantBackend(), Retriever(Gallery.load(workdir / "gallery"), encoder))
    photo = SHARED / "photos" / "DSCN0010.jpg"
    assistant.locate(photo)  # warm-up: first-call costs (lazy imports, page faults)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        prediction = assistant.locate(photo)
        times.append(time.perf_counter() - start)
    assert prediction.lat is not None and len(prediction.similar) == len(prediction.dissimilar) == K
    return {"gallery_build_s": build_s, "gallery_index": gallery.index.kind,
            "locate_ms": 1000 * float(np.median(times)), "locate_ms_p90": 1000 * float(np.percentile(times, 90))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--timed-flat-queries", type=int, default=40, help="single flat queries timed")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gaea-retrieval-bench-") as tmp:
        figures = index_benchmark(args.vectors, args.queries, args.timed_flat_queries, Path(tmp))
        overhead = locate_overhead(Path(tmp), repeats=30)
    ms_flat, bytes_flat, bytes_ivf = figures["ms_flat"], figures["bytes_flat"], figures["bytes_compressed"]
    print(f"\n== {args.vectors:,} vectors x {DIM} dims, {args.queries} queries, k = {K} similar + {K} dissimilar ==")
    print(f"exact flat (IndexFlatIP): {ms_flat:8.2f} ms per query (16 similar + 16 dissimilar, 1 thread), "
          f"{bytes_flat / 1e6:8.1f} MB in RAM")
    print(f"ivfpq, defaults, timed alternately with flat on the same {args.timed_flat_queries} queries: "
          f"{figures['ms_paired']:6.2f} ms per query, speed-up x{ms_flat / figures['ms_paired']:.1f}")
    ms_flat_t, ms_ivf_t = figures["ms_flat_threads"], figures["ms_paired_threads"]
    print(f"default threads ({DEFAULT_THREADS}) on both sides, nq=1, timed alternately on the same "
          f"{args.timed_flat_queries} queries: flat {ms_flat_t:.2f} ms, ivfpq {ms_ivf_t:.2f} ms per query, "
          f"speed-up x{ms_flat_t / ms_ivf_t:.1f}")
    for params in SETTINGS:
        ms = figures[f"ms_{params}"]
        label = f"nprobe={params.nprobe}, shortlists {params.k_factor * K} / {params.dissimilar_k_factor * K}"
        print(f"ivfpq {label}: {ms:6.2f} ms per query, recall@16 similar {figures[f'recall_similar_{params}']:.3f}, "
              f"dissimilar {figures[f'recall_dissimilar_{params}']:.3f}, speed-up x{ms_flat / ms:.1f}")
    print(f"ivfpq index in RAM:       {bytes_ivf / 1e6:8.1f} MB = 1/{bytes_flat / bytes_ivf:.1f} of flat "
          "(full vectors stay on disk, memory-mapped; only shortlisted rows are read, to re-rank)")
    print(f"ivfpq build:              {figures['build_s']:8.1f} s")
    print(f"\n== locate() on a 100,000-photo gallery ({overhead['gallery_index']} index, 768 dims), "
          "generation excluded, tiny encoder ==")
    print(f"retrieval overhead:       {overhead['locate_ms']:8.2f} ms median, {overhead['locate_ms_p90']:.2f} ms p90 "
          f"(target <= 50 ms); gallery written in {overhead['gallery_build_s']:.1f} s")


if __name__ == "__main__":
    main()
