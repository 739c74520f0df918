"""A geotagged photo gallery on disk: embeddings, coordinates, metadata and a search index.

Layout of a gallery folder::

    manifest.json      encoder, dimension, count, index kind, what it was built from, photos skipped
    embeddings.npy     (n x d) float32, L2-normalised (memory-mapped when loaded)
    coords.npy         (n x 2) float64 latitude, longitude
    metadata.jsonl     one line per photo: id, source, place (nearest GeoNames place), lat, lon
    index.faiss        the VectorIndex (+ index.faiss.json: its kind and search knobs)
    chunks/            work in progress while building: NNNNN.npy + NNNNN.jsonl pairs; a rerun continues
    run.json, run.lock the run journal (gaea.runs): the encoder a rerun must use; the build holding the folder

Photos come from any source of `gaea.sources`: a folder of geotagged photos (EXIF GPS), a CSV / JSONL
manifest, a `gaea data build` folder, parquet, a ``save_to_disk`` folder or ``hf:OWNER/NAME[:SPLIT]``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gaea.errors import BadInputError, PhotoRejected
from gaea.images import decode
from gaea.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl, readable_name
from gaea.retrieval.index import VectorIndex, as_float32_matrix
from gaea.runs import open_run
from gaea.sources import PhotoItem, Skipped, Source, open_source, opened_photo, photo_items
from gaea.types import Neighbor

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
INDEX_FILE = "index.faiss"


class Gallery:
    """A gallery loaded from disk (see the module docstring for the layout)."""

    def __init__(self, root: Path, embeddings: np.ndarray, coords: np.ndarray, metadata: list[dict[str, Any]],
                 index: VectorIndex, manifest: dict[str, Any]):
        self.root = root
        self.embeddings = embeddings
        self.coords = coords
        self.ids = [str(row["id"]) for row in metadata]
        self.sources = [str(row.get("source", "")) for row in metadata]
        self.places = [str(row.get("place", "")) for row in metadata]
        self.index = index
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.ids)

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
        return Neighbor(id=self.ids[row], lat=float(lat), lon=float(lon), similarity=float(similarity),
                        place=self.places[row], source=self.sources[row])

    @classmethod
    def load(cls, root: str | Path, *, mmap: bool = True) -> Gallery:
        """Open a gallery folder; embeddings and the index are memory-mapped when ``mmap``.

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
        missing = [name for name in ("embeddings.npy", "coords.npy", "metadata.jsonl", INDEX_FILE)
                   if not (root / name).is_file()]
        if missing:
            raise BadInputError(f"{root}: not a complete gallery, {', '.join(missing)} missing (rebuild it)")
        embeddings = np.load(root / "embeddings.npy", mmap_mode="r" if mmap else None)
        coords = np.load(root / "coords.npy")
        metadata = list(read_jsonl(root / "metadata.jsonl"))
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
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        _write_finished_gallery(root, embeddings, lats, lons, ids, sources, places,
                                manifest={"encoder": encoder, "built_from": built_from, "skipped": []},
                                index_kind=index_kind)
        return cls.load(root)


def place_names(lats: np.ndarray, lons: np.ndarray) -> list[str]:
    """'City, Region, Country' of the GeoNames place nearest each point (offline)."""
    from gaea.geo import reverse_geocode_many

    if len(lats) == 0:
        return []
    return [place.label for place in reverse_geocode_many(lats, lons)]


def _write_finished_gallery(root: Path, embeddings: np.ndarray, lats: np.ndarray, lons: np.ndarray,
                            ids: list[str], sources: list[str], places: list[str], *, manifest: dict[str, Any],
                            index_kind: str) -> None:
    n = len(embeddings)
    if n == 0:
        raise BadInputError(f"{root}: no photo to put in the gallery")
    _save_npy(root / "embeddings.npy", embeddings)
    _save_npy(root / "coords.npy", np.stack([lats, lons], axis=1))
    rows = [{"id": i, "source": s, "place": p, "lat": float(la), "lon": float(lo)}
            for i, s, p, la, lo in zip(ids, sources, places, lats, lons, strict=True)]
    atomic_write_jsonl(root / "metadata.jsonl", rows)
    index = VectorIndex.build(embeddings, kind=index_kind)
    index.save(root / INDEX_FILE)
    # The manifest is written last: its presence marks a finished gallery.
    atomic_write_json(root / "manifest.json", {
        "version": MANIFEST_VERSION, "count": n, "dim": int(embeddings.shape[1]), "index_kind": index.kind,
        "index_bytes": index.memory_bytes(), **manifest,
    })
    log.info("gallery of %d photos written to %s (%s index)", n, root, index.kind)


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    atomic_write_bytes(path, buffer.getvalue())


# -- building from photos ---------------------------------------------------------------------------


def build_gallery(images: str | Path | Source, out: str | Path, embedder: Any, *, index_kind: str = "auto",
                  chunk_size: int = 512, show_progress: bool = True, overwrite: bool = False) -> Gallery:
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
        ``auto``, ``flat``, ``ivfpq`` or ``hnsw``.
    chunk_size
        Photos per saved chunk (the most work an interruption can lose).
    overwrite
        Delete an earlier gallery in ``out`` and start afresh. Without it, a gallery begun with another
        encoder is refused (its embeddings cannot mix with this one's); other photos may be added.

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
                                 chunk_size=chunk_size, show_progress=show_progress)


def encoder_fingerprint(embedder: Any) -> dict[str, Any]:
    """What a gallery's embeddings depend on: a resumed build must embed with the same encoder."""
    name = embedder.model_name
    encoder = str(Path(name).resolve()) if Path(name).exists() else name  # a local folder, however it was named
    return {"encoder": encoder, "library": getattr(embedder, "library", None), "dim": embedder.dim}


def _build_from_items(items: list[PhotoItem], unusable: list[dict[str, str]], source: Source, out: Path,
                      embedder: Any, *, index_kind: str, chunk_size: int, show_progress: bool) -> Gallery:
    from tqdm.auto import tqdm

    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    done, skipped = _finished_chunk_ids(chunks_dir)
    todo = [item for item in items if item.key not in done and item.key not in skipped]
    log.info("%d photos in %s: %d already embedded, %d to do", len(items), source.spec, len(done), len(todo))
    progress = tqdm(total=len(items), initial=len(items) - len(todo), desc="gallery", unit="photo",
                    disable=not show_progress)
    next_chunk = _next_chunk_number(chunks_dir)
    for start in range(0, len(todo), chunk_size):
        _embed_chunk(todo[start:start + chunk_size], embedder, chunks_dir / f"{next_chunk:05d}", source)
        next_chunk += 1
        progress.update(len(todo[start:start + chunk_size]))
    progress.close()
    return _finish_from_chunks(out, chunks_dir, embedder, source, index_kind, unusable)


def skip_counts(skipped: list[dict[str, str]]) -> str:
    """"no_gps 2, corrupt 1" for a list of skipped entries ("nothing found" for none)."""
    counts = Counter(entry["reason"] for entry in skipped)
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())) or "nothing found"


def _embed_chunk(items: list[PhotoItem], embedder: Any, stem: Path, source: Source) -> None:
    """Embed ``items`` and save them as one chunk; unusable photos are recorded with their reasons."""
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
        origin = readable_name(item.image.path) if item.image.path else f"{source.spec} {item.where}"
        rows.append({"id": item.key, "source": origin, "lat": float(lat), "lon": float(lon)})
    vectors = embedder.embed(pils) if pils else np.zeros((0, embedder.dim), dtype=np.float32)
    _save_npy(stem.with_suffix(".npy"), vectors)
    # The .jsonl is written after the .npy: a chunk counts only once both exist.
    atomic_write_jsonl(stem.with_suffix(".jsonl"), rows + skipped)


def _finished_chunks(chunks_dir: Path) -> list[Path]:
    return sorted(p.with_suffix("") for p in chunks_dir.glob("*.jsonl") if p.with_suffix(".npy").exists())


def _finished_chunk_ids(chunks_dir: Path) -> tuple[set[str], set[str]]:
    done, skipped = set(), set()
    for stem in _finished_chunks(chunks_dir):
        for row in read_jsonl(stem.with_suffix(".jsonl")):
            (skipped if "skipped" in row else done).add(row["id"])
    return done, skipped


def _next_chunk_number(chunks_dir: Path) -> int:
    numbers = [int(p.stem) for p in chunks_dir.glob("*.npy") if p.stem.isdigit()]
    return max(numbers, default=-1) + 1


def _finish_from_chunks(out: Path, chunks_dir: Path, embedder: Any, source: Source, index_kind: str,
                        skipped: list[dict[str, str]]) -> Gallery:
    vectors, rows, skipped = [], [], list(skipped)
    for stem in _finished_chunks(chunks_dir):
        chunk_rows = list(read_jsonl(stem.with_suffix(".jsonl")))
        rows += [row for row in chunk_rows if "skipped" not in row]
        skipped += [Skipped(row["id"], row["skipped"], row.get("detail", "")).to_dict()
                    for row in chunk_rows if "skipped" in row]
        vectors.append(np.load(stem.with_suffix(".npy")))
    if not rows:
        reasons = skip_counts(skipped)
        raise BadInputError(f"{readable_name(source.spec)}: no usable photo to put in a gallery ({reasons}; "
                            "the warnings above say why)")
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), dtype=np.float32)
    lats = np.array([row["lat"] for row in rows], dtype=np.float64)
    lons = np.array([row["lon"] for row in rows], dtype=np.float64)
    _write_finished_gallery(
        out, embeddings, lats, lons, [row["id"] for row in rows], [row["source"] for row in rows],
        place_names(lats, lons), index_kind=index_kind,
        manifest={"encoder": embedder.model_name, "built_from": readable_name(source.spec), "skipped": skipped},
    )
    return Gallery.load(out)
