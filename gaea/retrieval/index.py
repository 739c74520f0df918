"""Vector search over gallery embeddings, on FAISS.

Four shapes, one interface:

- ``flat``: exact inner-product search (``IndexFlatIP``, what Img2Loc uses). Best for small galleries.
- ``ivfpq``: an inverted file over 4-bit fast-scan product-quantization codes (``IVF{n},PQ{d/2}x4fs``,
  192 bytes a vector at 768 dimensions instead of 3,072), whose shortlist of ``k_factor * k`` candidates
  is re-ranked exactly against the full-precision vectors, which stay on disk, memory-mapped (the
  gallery's ``embeddings.npy``): only the shortlisted rows are read. See ``benchmarks/retrieval.py``.
- ``ivf-disk``: the same inverted file over 4-bit scalar-quantized codes (384 bytes a vector at 768
  dimensions), its inverted lists in a file of their own (``OnDiskInvertedLists``, memory-mapped), the
  shortlist re-ranked the same way: only the coarse centroids and the list table stay in memory, a few
  MB whatever the size, and a search reads the lists it probes. The price is the every-list dissimilar
  scan, about 10x slower than fast-scan's (see ``benchmarks/scale_out.py``): fast-scan's packed blocks
  have no on-disk form in FAISS, and FAISS cannot memory-map them either.
- ``hnsw``: a graph index over the full vectors (fast queries, no compression, slow to build).

Every index is trained on a sample (``TRAIN_SAMPLE`` vectors) and filled in chunks of ``ADD_CHUNK`` rows
read from a (memory-mapped) matrix, so a build needs memory for the index, not for the vectors; an
on-disk index is filled shard by shard (``DISK_SHARD`` vectors each, built in memory and written out),
then the shards' lists are merged into its one file, as FAISS's ``contrib.ondisk`` does.

``auto`` picks ``flat`` below ``AUTO_COMPRESS_THRESHOLD`` vectors and ``ivfpq`` above. Dissimilar
neighbours are found by searching with the negated query, as Img2Loc does: the lowest inner products
with ``q`` are the highest with ``-q``. Probing only the lists nearest the antipode of the query is not
enough for them: in clustered data the least similar vectors are the tails of every cluster, spread over
all lists (measured: recall@16 under 0.2 with a quarter of the lists probed). So the negated query scans
every list's codes (fast-scan PQ makes that about 8 ms for a million vectors on one core) with a longer
shortlist, then re-ranks exactly. Measured and rejected for that scan: fewer PQ codes (96 or 48 bytes a
vector: dissimilar recall@16 0.62 / 0.22 with a 512 shortlist, still 0.90 / 0.50 with 4,096, whose
re-ranking eats the time saved) and fewer inverted lists (256: no faster).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import mmap
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from gaea.errors import BadInputError, ConfigError
from gaea.io import atomic_write_json

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "ivfpq", "ivf-disk", "hnsw")
#: The kinds built on an inverted file (IVF) of compressed codes, re-ranked against the full vectors.
IVF_KINDS = ("ivfpq", "ivf-disk")
#: Galleries with at least this many photos get the compressed index when the kind is "auto".
AUTO_COMPRESS_THRESHOLD = 100_000
#: Vectors used to train the IVF coarse quantizer and the PQ codebooks.
TRAIN_SAMPLE = 40_000
#: Rows added to an index per call while it is filled: all a fill holds besides the index itself.
ADD_CHUNK = 65_536
#: Vectors per shard of an ``ivf-disk`` index, built in memory (about 200 bytes a vector at 768
#: dimensions, so about 200 MB) before being written out and merged.
DISK_SHARD = 1_000_000
#: Dimensions per 4-bit PQ sub-quantizer of the ivfpq index (768 dimensions -> 384 codes, 192 bytes).
#: Two keep the codes precise enough to rank the dense tail of least similar vectors.
PQ_DIMS_PER_CODE = 2
#: FAISS fast-scan search implementation for IVF fast-scan indexes: 10 (one heap per query, no query
#: batching) beats the default's choice for the one-query-at-a-time searches `locate` makes; on the
#: benchmark's million vectors the every-list dissimilar scan took 8.8 ms instead of 10.5 ms, same results.
FAST_SCAN_IMPLEM = 10
#: The implementation of the every-list (dissimilar) scan when FAISS runs more than one OpenMP thread:
#: implem 10 searches one query on one thread, 15 splits a query's inverted lists over the threads. On
#: the benchmark's million vectors, with 2 threads, one query at a time: 6.3 ms instead of 7.9 ms, same
#: results (on 1 thread 15 is slower: 9.8 ms against 8.6). Not for searches probing only some lists:
#: there 15 (and 14) returned slightly different, worse neighbours than 10 (and differed between an
#: index and its saved copy), for 0.86 ms instead of 1.2 ms.
FAST_SCAN_IMPLEM_THREADED = 15


@dataclass(frozen=True)
class SearchParams:
    """Query-time knobs of the compressed indexes.

    Parameters
    ----------
    nprobe
        Inverted lists scanned per similar-neighbour query (IVF).
    k_factor
        The IVF-PQ shortlist is ``k_factor * k`` candidates, re-ranked exactly.
    dissimilar_nprobe
        Inverted lists scanned per dissimilar-neighbour query; 0 means all of them.
    dissimilar_k_factor
        Shortlist factor of dissimilar-neighbour queries (the low tail is denser than the top).
    ef_search
        Candidate-list size of an HNSW search.
    """

    nprobe: int = 16
    k_factor: int = 8
    dissimilar_nprobe: int = 0
    dissimilar_k_factor: int = 32
    ef_search: int = 128


def choose_kind(kind: str, n_vectors: int) -> str:
    """The concrete index kind for ``kind`` (one of INDEX_KINDS) and a gallery of ``n_vectors``."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind != "auto":
        return kind
    return "ivfpq" if n_vectors >= AUTO_COMPRESS_THRESHOLD else "flat"


def ivfpq_factory_string(dim: int, n_vectors: int) -> str:
    """The FAISS factory string of the compressed index for ``n_vectors`` vectors of ``dim`` dimensions.

    About sqrt(n) inverted lists (`inverted_lists_for`); 4-bit fast-scan PQ with one sub-quantizer per
    ``PQ_DIMS_PER_CODE`` dimensions (4-bit codebooks train in seconds, where 8-bit ones over hundreds of
    sub-vectors take minutes).
    """
    codes = _even_divisor_at_most(dim, max(2, dim // PQ_DIMS_PER_CODE))
    return f"IVF{inverted_lists_for(n_vectors)},PQ{codes}x4fs"


def disk_factory_string(n_vectors: int) -> str:
    """The FAISS factory string of the ``ivf-disk`` index: the same inverted file, 4-bit scalar codes.

    Measured on 100,000 clustered 768-dimensional vectors (every-list scan, one query, one core): SQ4
    (384 bytes a vector) 26 ms, recall@16 1.00 similar and dissimilar; plain 4-bit PQ384 (192 bytes)
    159 ms, 0.99; 8-bit PQ192 (192 bytes) 32 ms, 0.99, but a minute of training and 10,000 training
    vectors needed; SQ8 (768 bytes) 19 ms, 1.00, twice the file. Fast-scan PQ: 2.8 ms, in memory only.
    """
    return f"IVF{inverted_lists_for(n_vectors)},SQ4"


def inverted_lists_for(n_vectors: int) -> int:
    """About sqrt(n) inverted lists, a power of two, with at least 39 training vectors per list (k-means)."""
    nlist = max(1, min(int(math.sqrt(n_vectors)), min(n_vectors, TRAIN_SAMPLE) // 39))
    return 2 ** int(math.log2(nlist))


def _even_divisor_at_most(n: int, limit: int) -> int:
    """The largest even divisor of ``n`` not above ``limit`` (fast-scan PQ needs an even code count)."""
    for m in range(min(limit, n), 1, -1):
        if n % m == 0 and m % 2 == 0:
            return m
    raise ConfigError(f"an ivfpq index needs an even vector dimension, got {n}")


class VectorIndex:
    """Inner-product search over L2-normalised float32 vectors (cosine similarity).

    Build with :meth:`build` (or :meth:`create` + :meth:`train` + :meth:`add` for data that arrives in
    chunks), then :meth:`search` for the most similar and :meth:`search_dissimilar` for the least.
    """

    def __init__(self, index: faiss.Index, kind: str, *, params: SearchParams | None = None):
        self.index = index
        self.kind = kind
        self.params = params or SearchParams()
        self._exact_vectors: np.ndarray | None = None
        self._fast_scan: faiss.IndexIVFFastScan | None = None
        self._apply_params()

    def attach_vectors(self, vectors: np.ndarray) -> None:
        """Give a compressed index the full-precision vectors (row i = id i) to re-rank its shortlist with.

        Pass a memory-mapped array (``np.load(path, mmap_mode="r")``): only the shortlisted rows are read.
        """
        if self.kind not in IVF_KINDS:
            return
        if vectors.shape != (self.ntotal, self.dim):
            raise BadInputError(f"re-ranking vectors have shape {vectors.shape}, the index holds "
                                f"{self.ntotal} x {self.dim}")
        _advise_random_reads(vectors)
        self._exact_vectors = vectors

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, dim: int, n_vectors: int, *, kind: str = "auto", params: SearchParams | None = None) -> VectorIndex:
        """An empty index of ``kind`` sized for about ``n_vectors`` vectors of ``dim`` dimensions.

        An ``ivf-disk`` index is created in memory and gets its inverted-list file from :meth:`build`.
        """
        if dim < 1:
            raise BadInputError(f"vector dimension must be positive, got {dim}")
        concrete = choose_kind(kind, n_vectors)
        if concrete == "flat":
            index = faiss.IndexFlatIP(dim)
        elif concrete == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        else:
            if n_vectors < 1000:
                raise ConfigError(f"an {concrete} index needs at least 1000 vectors to train, the gallery has "
                                  f"{n_vectors}")
            factory = ivfpq_factory_string(dim, n_vectors) if concrete == "ivfpq" else disk_factory_string(n_vectors)
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        log.info("created %s index (%s) for %d vectors of dimension %d", concrete, type(index).__name__, n_vectors, dim)
        return cls(index, concrete, params=params)

    @classmethod
    def build(cls, vectors: np.ndarray, *, kind: str = "auto", params: SearchParams | None = None,
              seed: int = 0, lists_file: str | Path | None = None) -> VectorIndex:
        """An index of ``kind`` over ``vectors`` (n x d), trained on a sample of them when it needs training.

        ``vectors`` may be memory-mapped (``np.load(path, mmap_mode="r")``): it is read in chunks, so the
        build holds the index, not the vectors. A compressed index keeps ``vectors`` to re-rank with (see
        :meth:`attach_vectors`). An ``ivf-disk`` index writes its inverted lists to ``lists_file``, which
        must end up beside the index file (:meth:`save`).
        """
        n, dim = _matrix_shape(vectors, "vectors")
        index = cls.create(dim, n, kind=kind, params=params)
        if index.needs_training:
            index.train(training_sample(vectors, seed=seed))
        if index.kind == "ivf-disk":
            if lists_file is None:
                raise ConfigError("an ivf-disk index needs the file its inverted lists go to (lists_file)")
            index._fill_on_disk(vectors, Path(lists_file))
        else:
            for _, chunk in _row_chunks(vectors, ADD_CHUNK):
                index.add(chunk)
        index.attach_vectors(vectors)
        return index

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        """Train the coarse quantizer and codebooks (IVF-PQ) on a representative ``sample``."""
        sample = as_float32_matrix(sample, "training sample", dim=self.dim)
        log.info("training the %s index on %d vectors", self.kind, len(sample))
        self.index.train(sample)

    def add(self, vectors: np.ndarray) -> None:
        """Append ``vectors``; their ids continue from :attr:`ntotal`."""
        if self.kind == "ivf-disk":
            raise ConfigError("an ivf-disk index is filled once, by VectorIndex.build")
        self.index.add(as_float32_matrix(vectors, "vectors", dim=self.dim))

    def _fill_on_disk(self, vectors: np.ndarray, lists_file: Path) -> None:
        """Fill the inverted lists shard by shard, then merge the shards' lists into ``lists_file``.

        Appending to FAISS's on-disk lists chunk by chunk grows every list in its file again and again
        (measured: 41 s for a million vectors, and a file twice the size); lists built per shard in
        memory and merged once are written in one pass, at their exact size.
        """
        shards_dir = lists_file.with_name(f".{lists_file.name}.shards")
        shutil.rmtree(shards_dir, ignore_errors=True)
        shards_dir.mkdir(parents=True)
        trained = faiss.serialize_index(self.index)
        shard_files = []
        for start, shard_vectors in _row_chunks(vectors, DISK_SHARD):
            shard = faiss.deserialize_index(trained)
            for offset, chunk in _row_chunks(shard_vectors, ADD_CHUNK):
                chunk = as_float32_matrix(chunk, "vectors", dim=self.dim)
                shard.add_with_ids(chunk, np.arange(start + offset, start + offset + len(chunk), dtype=np.int64))
            shard_files.append(shards_dir / f"{len(shard_files):05d}.faiss")
            faiss.write_index(shard, str(shard_files[-1]))
            del shard
        # Memory-mapped: the shards' lists are read from disk as they are merged, never all held at once.
        shards = [faiss.read_index(str(path), faiss.IO_FLAG_MMAP) for path in shard_files]
        lists = faiss.InvertedListsPtrVector()
        for shard in shards:
            lists.push_back(_find_ivf(shard).invlists)
        ivf = _find_ivf(self.index)
        lists_file.unlink(missing_ok=True)
        on_disk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_file.resolve()))
        with _faiss_prints_to_stderr():
            ntotal = on_disk.merge_from_multiple(lists.data(), lists.size(), False)
        ivf.replace_invlists(on_disk, True)
        on_disk.this.disown()  # the index owns it now
        self.index.ntotal = ivf.ntotal = ntotal
        del shards, lists
        shutil.rmtree(shards_dir)
        log.info("ivf-disk index: %d vectors in %d shards merged into %s", ntotal, len(shard_files), lists_file)

    # -- properties ---------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def memory_bytes(self) -> int:
        """Bytes the index holds in memory (codes, ids, centroids, codebooks, graph; for ``ivf-disk``
        the centroids, codebooks and list table, its lists being in :attr:`lists_file`)."""
        if self.kind == "flat":
            return self.ntotal * self.dim * 4 + 64
        return int(faiss.serialize_index(self.index).nbytes)

    @property
    def lists_file(self) -> Path | None:
        """The file of an ``ivf-disk`` index's inverted lists (None for the other kinds)."""
        ivf = _find_ivf(self.index)
        lists = faiss.downcast_InvertedLists(ivf.invlists) if ivf is not None else None
        return Path(lists.filename) if isinstance(lists, faiss.OnDiskInvertedLists) else None

    # -- search -------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar vectors of each query: (similarities, ids), both (n_queries x k), best first.

        Fewer than ``k`` results are padded with id -1 and similarity -inf.
        """
        queries = as_float32_matrix(queries, "queries", dim=self.dim)
        scores, ids = self._search(queries, self._checked_k(k))
        scores[ids < 0] = -np.inf
        return scores, ids

    def search_dissimilar(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` least similar vectors of each query: (similarities, ids), least similar first.

        Searches with the negated queries, as Img2Loc does; similarities are given back un-negated.
        """
        queries = as_float32_matrix(queries, "queries", dim=self.dim)
        scores, ids = self._search(-queries, self._checked_k(k), dissimilar=True)
        scores = -scores
        scores[ids < 0] = np.inf
        return scores, ids

    def _search(self, queries: np.ndarray, k: int, *, dissimilar: bool = False) -> tuple[np.ndarray, np.ndarray]:
        ivf = _find_ivf(self.index)
        if ivf is None:
            return self.index.search(queries, k)
        nprobe = self.params.dissimilar_nprobe if dissimilar else self.params.nprobe
        k_factor = self.params.dissimilar_k_factor if dissimilar else self.params.k_factor
        search_params = faiss.SearchParametersIVF(nprobe=min(nprobe or ivf.nlist, ivf.nlist))
        if self._fast_scan is not None:
            # Picked per search: the thread count can change (faiss.omp_set_num_threads) after loading.
            threaded = faiss.omp_get_max_threads() > 1 and search_params.nprobe >= ivf.nlist
            self._fast_scan.implem = FAST_SCAN_IMPLEM_THREADED if threaded else FAST_SCAN_IMPLEM
        if self._exact_vectors is None:
            return self.index.search(queries, k, params=search_params)
        _, shortlist = self.index.search(queries, k * k_factor, params=search_params)
        return _rerank(queries, shortlist, self._exact_vectors, k)

    def _checked_k(self, k: int) -> int:
        if k < 1:
            raise BadInputError(f"k must be at least 1, got {k}")
        return k

    def _apply_params(self) -> None:
        ivf = _find_ivf(self.index)
        if ivf is not None:
            ivf.nprobe = min(self.params.nprobe, ivf.nlist)
            fast_scan = faiss.downcast_index(ivf)
            if isinstance(fast_scan, faiss.IndexIVFFastScan):
                fast_scan.implem = FAST_SCAN_IMPLEM
                self._fast_scan = fast_scan
        if isinstance(self.index, faiss.IndexHNSW):
            self.index.hnsw.efSearch = self.params.ef_search

    def set_params(self, params: SearchParams) -> None:
        """Change the query-time knobs (nprobe, k_factor, ef_search)."""
        self.params = params
        self._apply_params()

    # -- persistence --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (FAISS format) and its kind and search knobs beside it (``.json``).

        An ``ivf-disk`` index writes only its header there: its lists file must be in the same folder,
        which is where :meth:`load` looks for it (the folder may move).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lists_file = self.lists_file
        if lists_file is not None and lists_file.parent.resolve() != path.parent.resolve():
            raise ConfigError(f"{path}: an ivf-disk index is saved beside its lists file {lists_file}")
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(self.index, str(tmp))
        tmp.replace(path)
        atomic_write_json(_meta_path(path), {"kind": self.kind, "params": self.params.__dict__})

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> VectorIndex:
        """Read an index written by :meth:`save`, memory-mapped when FAISS can map that index type (an
        ``ivf-disk`` index's lists are always mapped from their file)."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"{path}: no such index file")
        meta_path = _meta_path(path)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        # An on-disk index maps its lists file itself; FAISS's mmap flag on top of that crashes its search.
        index = _read_index(path, mmap=mmap and meta.get("kind") != "ivf-disk")
        kind = meta.get("kind") or _kind_of(index)
        return cls(index, kind, params=SearchParams(**meta.get("params", {})))


def _read_index(path: Path, *, mmap: bool) -> faiss.Index:
    # An on-disk index's lists file is looked for beside the index file, wherever it was built.
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
    if mmap:
        try:
            with _faiss_prints_to_stderr():
                return faiss.read_index(str(path), flags | faiss.IO_FLAG_MMAP)
        except RuntimeError as error:
            # Not every index type can be mapped (e.g. fast-scan codes); read it into memory instead.
            log.debug("%s cannot be memory-mapped (%s); reading it into memory", path, error)
    try:
        with _faiss_prints_to_stderr():
            return faiss.read_index(str(path), flags)
    except RuntimeError as error:
        raise BadInputError(f"{path}: not a readable FAISS index ({error})") from error


@contextlib.contextmanager
def _faiss_prints_to_stderr() -> Iterator[None]:
    """Send what FAISS's C++ code prints to stdout to stderr instead while the block runs.

    The on-disk lists print "resizing FILE to N bytes" and "updating ondisk filename" with printf,
    which would land in the middle of a command's output.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    ivf = _find_ivf(index)
    if ivf is not None:
        return "ivf-disk" if isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists) \
            else "ivfpq"
    return "flat"


def _find_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    return faiss.try_extract_index_ivf(index)


def _rerank(queries: np.ndarray, shortlist: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's shortlist by exact inner product with ``vectors`` (padded with -1)."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for row, (query, candidates) in enumerate(zip(queries, shortlist, strict=True)):
        candidates = candidates[candidates >= 0]
        # Sorted reads are sequential on disk, and np.unique also drops duplicates.
        candidates = np.unique(candidates)
        exact = np.asarray(vectors[candidates], dtype=np.float32) @ query
        best = np.argsort(-exact, kind="stable")[:k]
        scores[row, : len(best)] = exact[best]
        ids[row, : len(best)] = candidates[best]
    return scores, ids


def _advise_random_reads(vectors: np.ndarray) -> None:
    """Tell the kernel that a memory-mapped matrix is read a row here, a row there: on a gallery bigger than
    the page cache, each shortlisted 3 KB row would otherwise read the kernel's readahead window around
    it from disk (128 KB by default), forty times what re-ranking needs."""
    backing = getattr(vectors, "_mmap", None)  # np.memmap keeps its mmap.mmap there
    if isinstance(backing, mmap.mmap) and hasattr(mmap, "MADV_RANDOM"):
        backing.madvise(mmap.MADV_RANDOM)


def _matrix_shape(vectors: np.ndarray, name: str) -> tuple[int, int]:
    """(rows, dimensions) of a matrix of vectors, without reading it (it may be memory-mapped)."""
    if getattr(vectors, "ndim", None) != 2:
        raise BadInputError(f"{name}: expected a 2-D array of vectors, got shape {np.shape(vectors)}")
    return int(vectors.shape[0]), int(vectors.shape[1])


def _row_chunks(vectors: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of ``vectors`` in slices of ``size`` rows (views: a memory map reads them then)."""
    for start in range(0, len(vectors), size):
        yield start, vectors[start:start + size]


def training_sample(vectors: np.ndarray, *, size: int = TRAIN_SAMPLE, seed: int = 0) -> np.ndarray:
    """A random sample of at most ``size`` rows of ``vectors`` (all of them when there are fewer)."""
    if len(vectors) <= size:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=size, replace=False))
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def as_float32_matrix(array: np.ndarray, name: str, *, dim: int | None = None) -> np.ndarray:
    """``array`` as a C-contiguous float32 (n x d) matrix (a single vector becomes 1 x d)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise BadInputError(f"{name}: expected a 2-D array of vectors, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise BadInputError(f"{name}: vectors have {array.shape[1]} dimensions, the index has {dim}")
    if not np.isfinite(array).all():
        raise BadInputError(f"{name}: contains NaN or infinite values")
    return np.ascontiguousarray(array)
