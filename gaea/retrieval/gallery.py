"""A geotagged photo gallery on disk: embeddings, coordinates, metadata and a search index.

Layout of a gallery folder::

    manifest.json      encoder, dimension, count, index kind, what it was built from, photos skipped
    embeddings.npy     (n x d) float32, L2-normalised (memory-mapped when loaded)
    coords.npy         (n x 2) float64 latitude, longitude
    metadata.jsonl     one line per photo: id, source, place (nearest GeoNames place), lat, lon
    metadata.offsets.npy  the byte offset of each metadata line (rows are read one by one, when asked for)
    index.faiss        the VectorIndex (+ index.faiss.json: its kind and search knobs)
    index.ivfdata      the inverted lists of an ``ivf-disk`` index (memory-mapped)
    chunks/            work in progress while building: NNNNN.npy + NNNNN.jsonl pairs; a rerun continues
    run.json, run.lock the run journal (gaea.runs): the encoder a rerun must use; the build holding the folder

Photos come from any source of `gaea.sources`: a folder of geotagged photos (EXIF GPS), a CSV / JSONL
manifest, a `gaea data build` folder, parquet, a ``save_to_disk`` folder or ``hf:OWNER/NAME[:SPLIT]``.

Opening a gallery reads none of its rows: embeddings, coordinates and metadata offsets are memory-mapped,
so a gallery of tens of millions of photos opens in the memory of its index (see `gaea.retrieval.index`).
Galleries are written in bounded memory too (`GalleryWriter`), from build chunks or from whole galleries
built elsewhere (`merge_galleries`, `gaea gallery merge`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import mmap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaea.errors import BadInputError, PhotoRejected
from gaea.images import decode
from gaea.io import (
    JsonlAppender,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    read_jsonl,
    readable_name,
)
from gaea.retrieval.index import ADD_CHUNK, VectorIndex, as_float32_matrix
from gaea.runs import open_run
from gaea.sources import PhotoItem, Skipped, Source, open_source, opened_photo, photo_items
from gaea.types import Neighbor

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
INDEX_FILE = "index.faiss"
LISTS_FILE = "index.ivfdata"
METADATA_FILE = "metadata.jsonl"
OFFSETS_FILE = "metadata.offsets.npy"
#: Components of the encoder's probe embedding a manifest keeps, and how far two may differ for the
#: encoders to count as one (float noise between devices is about 1e-5; two encoders differ by ~0.1).
PROBE_VALUES = 16
PROBE_TOLERANCE = 5e-3



class Gallery:
    """A gallery loaded from disk (see the module docstring for the layout).

    Searches read the metadata rows they return (`neighbor`); ``ids``, ``sources`` and ``places`` read a
    whole column, once, when first asked for.
    """

    def __init__(self, root: Path, embeddings: np.ndarray, coords: np.ndarray, metadata: MetadataRows,
                 index: VectorIndex, manifest: dict[str, Any]):
        self.root = root
        self.embeddings = embeddings
        self.coords = coords
        self.metadata = metadata
        self.index = index
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.metadata)

    @functools.cached_property
    def ids(self) -> list[str]:
        return self.metadata.column("id")

    @functools.cached_property
    def sources(self) -> list[str]:
        return self.metadata.column("source")

    @functools.cached_property
    def places(self) -> list[str]:
        return self.metadata.column("place")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def encoder(self) -> str:
        """The encoder the embeddings were made with (queries must use the same one)."""
        return str(self.manifest.get("encoder", ""))

    def neighbor(self, row: int, similarity: float) -> Neighbor:
        """Gallery photo ``row`` as a Neighbor with the given similarity to a query."""
        lat, lon = self.coords[row]
        meta = self.metadata.row(row)
        return Neighbor(id=str(meta["id"]), lat=float(lat), lon=float(lon), similarity=float(similarity),
                        place=str(meta.get("place", "")), source=str(meta.get("source", "")))

    @classmethod
    def load(cls, root: str | Path, *, mmap: bool = True) -> Gallery:
        """Open a gallery folder; embeddings, coordinates and the index are memory-mapped when ``mmap``.

        Raises
        ------
        BadInputError
            When the folder is not a finished gallery.
        """
        root = Path(root)
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise BadInputError(f"{root}: not a gallery (no manifest.json; build one with `gaea gallery build`)")
        manifest = json.loads(manifest_path.read_text())
        missing = [name for name in ("embeddings.npy", "coords.npy", METADATA_FILE, INDEX_FILE)
                   if not (root / name).is_file()]
        if missing:
            raise BadInputError(f"{root}: not a complete gallery, {', '.join(missing)} missing (rebuild it)")
        mode = "r" if mmap else None
        embeddings = np.load(root / "embeddings.npy", mmap_mode=mode)
        coords = np.load(root / "coords.npy", mmap_mode=mode)
        metadata = MetadataRows(root / METADATA_FILE)
        index = VectorIndex.load(root / INDEX_FILE, mmap=mmap)
        if not len(metadata) == len(embeddings) == len(coords) == index.ntotal:
            raise BadInputError(
                f"{root}: gallery files disagree: {len(embeddings)} embeddings, {len(coords)} coordinates, "
                f"{len(metadata)} metadata rows, {index.ntotal} indexed vectors (rebuild it)"
            )
        index.attach_vectors(embeddings)
        return cls(root, embeddings, coords, metadata, index, manifest)

    @classmethod
    def from_arrays(cls, root: str | Path, embeddings: np.ndarray, lats: np.ndarray, lons: np.ndarray, *,
                    ids: list[str] | None = None, sources: list[str] | None = None,
                    places: list[str] | None = None, encoder: str = "", index_kind: str = "auto",
                    built_from: str = "arrays") -> Gallery:
        """Write a gallery from embeddings already computed and their coordinates, then load it.

        ``places`` default to the nearest GeoNames place of each point (offline reverse geocoding).
        """
        embeddings = as_float32_matrix(embeddings, "embeddings")
        n = len(embeddings)
        lats, lons = np.asarray(lats, dtype=np.float64), np.asarray(lons, dtype=np.float64)
        if lats.shape != (n,) or lons.shape != (n,):
            raise BadInputError(f"{n} embeddings need {n} latitudes and longitudes, got {lats.shape} and {lons.shape}")
        ids = ids or [str(i) for i in range(n)]
        sources = sources or [""] * n
        places = places if places is not None else place_names(lats, lons)
        writer = GalleryWriter(Path(root), n, embeddings.shape[1])
        writer.add(embeddings, [{"id": i, "source": s, "place": p, "lat": la, "lon": lo}
                                for i, s, p, la, lo in zip(ids, sources, places, lats, lons, strict=True)])
        writer.finish(index_kind=index_kind, manifest={"encoder": encoder, "built_from": built_from, "skipped": []})
        return cls.load(root)


class MetadataRows:
    """The rows of a gallery's ``metadata.jsonl``, each parsed when asked for, found through its byte
    offset (``metadata.offsets.npy``, memory-mapped; counted from the file when a gallery has none)."""

    def __init__(self, path: Path):
        offsets = path.with_name(OFFSETS_FILE)
        self._offsets = np.load(offsets, mmap_mode="r") if offsets.is_file() else line_offsets(path)
        try:
            with open(path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:
            raise BadInputError(f"{path}: unreadable gallery metadata ({error})") from None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def row(self, number: int) -> dict[str, Any]:
        start, stop = int(self._offsets[number]), int(self._offsets[number + 1])
        return json.loads(self._map[start:stop])

    def column(self, name: str) -> list[str]:
        """Field ``name`` of every row (reads the whole file)."""
        return [str(self.row(number).get(name, "")) for number in range(len(self))]


def line_offsets(path: Path) -> np.ndarray:
    """The byte offset where each line of ``path`` starts, then the file's size: n + 1 int64 values."""
    ends = [np.zeros(1, dtype=np.int64)]
    with open(path, "rb") as handle:
        position = 0
        while block := handle.read(1 << 24):
            ends.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n")) + position + 1)
            position += len(block)
    return np.concatenate(ends).astype(np.int64)


def place_names(lats: np.ndarray, lons: np.ndarray) -> list[str]:
    """'City, Region, Country' of the GeoNames place nearest each point (offline)."""
    from gaea.geo import reverse_geocode_many

    if len(lats) == 0:
        return []
    return [place.label for place in reverse_geocode_many(lats, lons)]


class GalleryWriter:
    """Writes a gallery folder from rows that arrive in parts, holding one part at a time.

    Embeddings and coordinates go straight into memory-mapped ``.npy`` files (temporary names until
    `finish`), metadata lines into ``metadata.jsonl``; `finish` builds the index from the finished
    embeddings file in chunks and writes the manifest last, which marks the gallery finished.
    """

    def __init__(self, root: Path, count: int, dim: int):
        if count == 0:
            raise BadInputError(f"{root}: no photo to put in the gallery")
        self.root, self.count, self.dim = root, count, dim
        root.mkdir(parents=True, exist_ok=True)
        (root / "manifest.json").unlink(missing_ok=True)
        self._embeddings = np.lib.format.open_memmap(_partial(root / "embeddings.npy"), mode="w+",
                                                     dtype=np.float32, shape=(count, dim))
        self._coords = np.lib.format.open_memmap(_partial(root / "coords.npy"), mode="w+", dtype=np.float64,
                                                 shape=(count, 2))
        _partial(root / METADATA_FILE).unlink(missing_ok=True)
        self._metadata = JsonlAppender(_partial(root / METADATA_FILE))
        self._filled = 0

    def add(self, vectors: np.ndarray, rows: Sequence[dict[str, Any]]) -> None:
        """Append photos: their embeddings and rows with id, source, place, lat and lon."""
        vectors = as_float32_matrix(vectors, "embeddings", dim=self.dim)
        stop = self._filled + len(rows)
        if len(vectors) != len(rows) or stop > self.count:
            raise ValueError(f"{len(vectors)} embeddings and {len(rows)} rows after {self._filled} of {self.count}")
        self._embeddings[self._filled:stop] = vectors
        self._coords[self._filled:stop] = [(row["lat"], row["lon"]) for row in rows]
        self._metadata.write_many({"id": row["id"], "source": row["source"], "place": row["place"],
                                   "lat": float(row["lat"]), "lon": float(row["lon"])} for row in rows)
        self._filled = stop

    def finish(self, *, index_kind: str, manifest: dict[str, Any]) -> None:
        """Put the files in place, build and save the index, then write the manifest."""
        if self._filled != self.count:
            raise ValueError(f"{self.root}: {self._filled} of the {self.count} photos announced were added")
        root = self.root
        self._embeddings.flush()
        self._coords.flush()
        self._metadata.close()
        del self._embeddings, self._coords  # unmapped before the files are renamed
        for name in ("embeddings.npy", "coords.npy", METADATA_FILE):
            _partial(root / name).replace(root / name)
        _save_npy(root / OFFSETS_FILE, line_offsets(root / METADATA_FILE))
        index = VectorIndex.build(np.load(root / "embeddings.npy", mmap_mode="r"), kind=index_kind,
                                  lists_file=root / LISTS_FILE)
        index.save(root / INDEX_FILE)
        if index.lists_file is None:
            (root / LISTS_FILE).unlink(missing_ok=True)  # left by an earlier build with another index kind
        lists = {"index_lists_bytes": index.lists_file.stat().st_size} if index.lists_file else {}
        # The manifest is written last: its presence marks a finished gallery.
        atomic_write_json(root / "manifest.json", {
            "version": MANIFEST_VERSION, "count": self.count, "dim": self.dim, "index_kind": index.kind,
            "index_bytes": index.memory_bytes(), **lists, **manifest,
        })
        log.info("gallery of %d photos written to %s (%s index)", self.count, root, index.kind)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    atomic_write_bytes(path, buffer.getvalue())


# -- building from photos ---------------------------------------------------------------------------


def build_gallery(images: str | Path | Source, out: str | Path, embedder: Any, *, index_kind: str = "auto",
                  chunk_size: int = 512, show_progress: bool = True, overwrite: bool = False,
                  client: Any = None) -> Gallery:
    """Embed every geotagged photo of ``images`` into a gallery at ``out``; resumable.

    Parameters
    ----------
    images
        Any photo source of `gaea.sources`, opened or as a spec (a folder of photos with EXIF GPS, a CSV /
        JSONL manifest, a `gaea data build` folder, parquet, a ``save_to_disk`` folder, ``hf:OWNER/NAME[:SPLIT]``).
    out
        The gallery folder. Embeddings are appended in chunks under ``out/chunks``; a rerun after an
        interruption embeds only the photos not yet done.
    embedder
        A :class:`gaea.retrieval.embedder.Embedder` (its ``batch_size`` sets the batch).
    index_kind
        ``auto``, ``flat``, ``ivfpq``, ``ivf-disk`` or ``hnsw`` (see `gaea.retrieval.index`).
    chunk_size
        Photos per saved chunk (the most work an interruption can lose).
    overwrite
        Delete an earlier gallery in ``out`` and start afresh. Without it, a gallery begun with another
        encoder is refused (its embeddings cannot mix with this one's); other photos may be added.

    client
        A Dask client (`gaea.distributed.cluster`): its workers embed the chunks, each with an encoder of
        its own built like ``embedder``; this process commits them. The gallery equals one built here.

    Photos that cannot be used (no position, unreadable, a bad manifest row, ...) are left out and listed
    with their reasons under ``"skipped"`` in the manifest.
    """
    out = Path(out)
    source = images if isinstance(images, Source) else open_source(images)
    entries = list(photo_items(source))
    items = [entry for entry in entries if isinstance(entry, PhotoItem)]
    unusable = [entry.to_dict() for entry in entries if isinstance(entry, Skipped)]
    if not items:
        raise BadInputError(f"{readable_name(source.spec)}: no photo to put in a gallery ({skip_counts(unusable)})")
    with open_run(out, job="gaea gallery build", fingerprint=encoder_fingerprint(embedder), overwrite=overwrite):
        return _build_from_items(items, unusable, source, out, embedder, index_kind=index_kind,
                                 chunk_size=chunk_size, show_progress=show_progress, client=client)


def encoder_fingerprint(embedder: Any) -> dict[str, Any]:
    """What a gallery's embeddings depend on: a resumed build must embed with the same encoder."""
    name = embedder.model_name
    encoder = str(Path(name).resolve()) if Path(name).exists() else name  # a local folder, however it was named
    return {"encoder": encoder, "library": getattr(embedder, "library", None), "dim": embedder.dim}


def _build_from_items(items: list[PhotoItem], unusable: list[dict[str, str]], source: Source, out: Path,
                      embedder: Any, *, index_kind: str, chunk_size: int, show_progress: bool,
                      client: Any = None) -> Gallery:
    from tqdm.auto import tqdm

    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    done, skipped = _finished_chunk_ids(chunks_dir)
    parts = _parts_to_do(items, done | skipped, chunk_size)
    todo = sum(len(part) for _, part in parts)
    log.info("%d photos in %s: %d already embedded, %d to do", len(items), source.spec, len(done), todo)
    progress = tqdm(total=len(items), initial=len(items) - todo, desc="gallery", unit="photo",
                    disable=not show_progress)
    counter = _next_chunk_number(chunks_dir)
    stems = [chunks_dir / f"{position:010d}-{counter + n:05d}" for n, (position, _) in enumerate(parts)]
    if client is None:
        embedded: Any = ((n, embedded_photos(part, embedder, source.spec)) for n, (_, part) in enumerate(parts))
    else:
        from gaea.distributed import map_parts

        embedded = map_parts(client, embed_on_worker, [part for _, part in parts], embedder.recipe(), source.spec)
    for number, (vectors, rows, probe) in embedded:
        _check_worker_encoder(embedder, probe)
        _save_npy(stems[number].with_suffix(".npy"), vectors)
        # The .jsonl is written after the .npy: a chunk counts only once both exist.
        atomic_write_jsonl(stems[number].with_suffix(".jsonl"), rows)
        progress.update(len(parts[number][1]))
    progress.close()
    return _finish_from_chunks(out, chunks_dir, embedder, source, index_kind, unusable)


def _parts_to_do(items: list[PhotoItem], finished: set[str], size: int) -> list[tuple[int, list[PhotoItem]]]:
    """The photos still to embed as ``(position of the first, photos)`` chunks of at most `size`, none
    spanning a photo already done. Chunks are named by that position, so the gallery keeps the photos'
    order however the chunks of a run were split, finished out of order or resumed."""
    parts: list[tuple[int, list[PhotoItem]]] = []
    current: tuple[int, list[PhotoItem]] | None = None
    for position, item in enumerate(items):
        if item.key in finished:
            current = None
            continue
        if current is None or len(current[1]) == size:
            current = (position, [])
            parts.append(current)
        current[1].append(item)
    return parts


def skip_counts(skipped: list[dict[str, str]]) -> str:
    """"no_gps 2, corrupt 1" for a list of skipped entries ("nothing found" for none)."""
    counts = Counter(entry["reason"] for entry in skipped)
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())) or "nothing found"


def embedded_photos(items: list[PhotoItem], embedder: Any, source_spec: str) -> tuple[np.ndarray, list[dict], Any]:
    """The embeddings of the usable photos of `items`, one row each (id, source, lat, lon) followed by the
    unusable ones with their reasons, and the embedder's probe embedding (which encoder made them)."""
    pils, rows, skipped = [], [], []
    for item in items:
        try:
            with opened_photo(item) as (image, lat, lon):
                decode(image, name=item.key)
                pils.append(image.convert("RGB"))
        except PhotoRejected as rejected:
            log.warning("skipping %s", rejected.detail)
            skipped.append({"id": item.key, "skipped": rejected.reason, "detail": rejected.detail})
            continue
        origin = readable_name(item.image.path) if item.image.path else f"{source_spec} {item.where}"
        rows.append({"id": item.key, "source": origin, "lat": float(lat), "lon": float(lon)})
    vectors = embedder.embed(pils) if pils else np.zeros((0, embedder.dim), dtype=np.float32)
    return vectors, rows + skipped, getattr(embedder, "probe", None)


def embed_on_worker(items: list[PhotoItem], recipe: dict[str, Any], source_spec: str) -> tuple[np.ndarray, list, Any]:
    """`embedded_photos` on a cluster worker, with the worker's own encoder (loaded once per process)."""
    return embedded_photos(items, _worker_embedder(**recipe), source_spec)


@functools.lru_cache(maxsize=1)
def _worker_embedder(**recipe: Any) -> Any:
    from gaea.retrieval.embedder import Embedder

    return Embedder(**recipe)


def _check_worker_encoder(embedder: Any, probe: Any) -> None:
    """Refuse embeddings from a worker whose encoder embeds the probe image otherwise than this one's."""
    ours = getattr(embedder, "probe", None)
    if ours is not None and probe is not None and not np.allclose(ours, probe, atol=PROBE_TOLERANCE):
        raise BadInputError(f"a worker's encoder {embedder.model_name} gives other embeddings than this machine's "
                            "(another version of the weights or libraries there?): its photos are not added")


def _chunk_order(stem: Path) -> tuple[int, ...]:
    return tuple(int(number) for number in stem.name.split("-"))


def _finished_chunks(chunks_dir: Path) -> list[Path]:
    stems = [p.with_suffix("") for p in chunks_dir.glob("*.jsonl") if p.with_suffix(".npy").exists()]
    return sorted(stems, key=_chunk_order)


def _finished_chunk_ids(chunks_dir: Path) -> tuple[set[str], set[str]]:
    done, skipped = set(), set()
    for stem in _finished_chunks(chunks_dir):
        for row in read_jsonl(stem.with_suffix(".jsonl")):
            (skipped if "skipped" in row else done).add(row["id"])
    return done, skipped


def _next_chunk_number(chunks_dir: Path) -> int:
    numbers = [_chunk_order(p.with_suffix(""))[-1] for p in chunks_dir.glob("*.npy")]
    return max(numbers, default=-1) + 1


def _finish_from_chunks(out: Path, chunks_dir: Path, embedder: Any, source: Source, index_kind: str,
                        skipped: list[dict[str, str]]) -> Gallery:
    stems = _finished_chunks(chunks_dir)
    count = sum(_rows_in_npy(stem.with_suffix(".npy")) for stem in stems)
    skipped = list(skipped) + [Skipped(row["id"], row["skipped"], row.get("detail", "")).to_dict()
                               for stem in stems for row in read_jsonl(stem.with_suffix(".jsonl")) if "skipped" in row]
    if not count:
        raise BadInputError(f"{readable_name(source.spec)}: no usable photo to put in a gallery "
                            f"({skip_counts(skipped)}; the warnings above say why)")
    writer = GalleryWriter(out, count, embedder.dim)
    for stem in stems:
        rows = [row for row in read_jsonl(stem.with_suffix(".jsonl")) if "skipped" not in row]
        places = place_names(np.array([row["lat"] for row in rows]), np.array([row["lon"] for row in rows]))
        writer.add(np.load(stem.with_suffix(".npy")),
                   [row | {"place": place} for row, place in zip(rows, places, strict=True)])
    writer.finish(index_kind=index_kind, manifest={**encoder_manifest(embedder),
                                                    "built_from": readable_name(source.spec), "skipped": skipped})
    return Gallery.load(out)


def _rows_in_npy(path: Path) -> int:
    return int(np.load(path, mmap_mode="r").shape[0])


def encoder_manifest(embedder: Any) -> dict[str, Any]:
    """What a gallery's manifest says of its encoder: the name, and the start of its probe embedding
    (see `Embedder.probe`), by which `merge_galleries` recognises the same encoder on another machine."""
    probe = getattr(embedder, "probe", None)
    values = {"encoder_probe": [round(float(v), 6) for v in probe[:PROBE_VALUES]]} if probe is not None else {}
    return {"encoder": embedder.model_name, **values}


# -- merging galleries built elsewhere ---------------------------------------------------------------


def merge_galleries(parts: Sequence[str | Path], out: str | Path, *, index_kind: str = "auto",
                    overwrite: bool = False) -> Gallery:
    """One gallery at ``out`` holding the photos of the galleries ``parts``, in that order.

    The parts may have been built anywhere (other machines, other runs); they must share the encoder,
    recognised by its probe embedding (or, for galleries made from arrays, by its name). The result equals
    a gallery built in one go from the parts' photos in that order: the same embeddings, coordinates,
    metadata rows and index (trained anew on a sample of all of them, filled in chunks).

    Raises
    ------
    BadInputError
        When a part is not a finished gallery, is named twice, is ``out`` itself, or has another encoder.
    """
    out = Path(out)
    galleries = [Gallery.load(part) for part in parts]
    if not galleries:
        raise BadInputError("gallery merge: name at least one gallery to merge")
    roots = [gallery.root.resolve() for gallery in galleries]
    if len(set(roots)) != len(roots):
        twice = next(root for root in roots if roots.count(root) > 1)
        raise BadInputError(f"{twice}: named twice among the galleries to merge")
    if out.resolve() in roots:
        raise BadInputError(f"{out}: the merged gallery cannot be written into one of its parts")
    _check_same_encoder(galleries)
    fingerprint = {"parts": [str(root) for root in roots], "index_kind": index_kind}
    with open_run(out, job="gaea gallery merge", fingerprint=fingerprint, overwrite=overwrite):
        writer = GalleryWriter(out, sum(len(gallery) for gallery in galleries), galleries[0].dim)
        for gallery in galleries:
            rows = read_jsonl(gallery.root / METADATA_FILE)
            for start in range(0, len(gallery), ADD_CHUNK):
                vectors = gallery.embeddings[start:start + ADD_CHUNK]
                writer.add(vectors, list(itertools.islice(rows, len(vectors))))
        first = galleries[0].manifest
        writer.finish(index_kind=index_kind, manifest={
            "encoder": first.get("encoder", ""),
            **({"encoder_probe": first["encoder_probe"]} if "encoder_probe" in first else {}),
            "built_from": " + ".join(str(gallery.manifest.get("built_from", gallery.root)) for gallery in galleries),
            "parts": [str(root) for root in roots],
            "skipped": [row for gallery in galleries for row in gallery.manifest.get("skipped", [])],
        })
    return Gallery.load(out)


def _check_same_encoder(galleries: Sequence[Gallery]) -> None:
    first = galleries[0]
    for other in galleries[1:]:
        if other.dim != first.dim:
            raise BadInputError(f"{other.root} holds {other.dim}-dimensional embeddings, {first.root} "
                                f"{first.dim}-dimensional ones: the parts of a gallery need one encoder")
        probes = first.manifest.get("encoder_probe"), other.manifest.get("encoder_probe")
        if None not in probes:
            same = len(probes[0]) == len(probes[1]) and np.allclose(*probes, atol=PROBE_TOLERANCE)
            why = "their encoders embed the same probe image differently"
        else:
            same = first.encoder == other.encoder != ""
            why = "a gallery without a probe embedding is merged only with one of the same encoder name"
        if not same:
            raise BadInputError(f"{other.root} was built with encoder {other.encoder or '(unnamed)'} and {first.root} "
                                f"with {first.encoder or '(unnamed)'}: {why}; rebuild the parts with one encoder")
        if other.encoder != first.encoder:
            log.info("%s and %s name their encoder differently (%s, %s) but it embeds alike", first.root,
                     other.root, first.encoder, other.encoder)
