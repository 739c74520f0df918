"""A geotagged photo gallery on disk: embeddings, coordinates, metadata and a search index.

Layout of a gallery folder::

    manifest.json      encoder, dimension, count, index kind, what it was built from, photos skipped
    embeddings.npy     (n x d) float32, L2-normalised (memory-mapped when loaded)
    coords.npy         (n x 2) float64 latitude, longitude
    metadata.jsonl     one line per photo: id, source, place (nearest GeoNames place), lat, lon
    index.faiss        the VectorIndex (+ index.faiss.json: its kind and search knobs)
    chunks/            work in progress while building: NNNNN.npy + NNNNN.jsonl pairs; a rerun continues
    run.json, run.lock the run journal (gaea.runs): the encoder a rerun must use; the build holding the folder

Photos come from a folder of geotagged photos (EXIF GPS), a CSV / JSONL manifest (path, lat, lon), a
dataset folder made by `gaea data build` (its qa.jsonl), or a Hugging Face dataset with image, lat and lon
columns (``hf:owner/name[:split]``, or a folder written by ``Dataset.save_to_disk``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gaea import exif
from gaea.errors import BadInputError
from gaea.images import IMAGE_SUFFIXES, load_image
from gaea.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl
from gaea.models.hub import prepare_hub_dataset
from gaea.retrieval.index import VectorIndex, as_float32_matrix
from gaea.runs import open_run
from gaea.types import Neighbor

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
INDEX_FILE = "index.faiss"


@dataclass(frozen=True)
class GalleryItem:
    """One geotagged photo to embed: ``image`` is a path or a function returning the PIL image."""

    id: str
    source: str
    lat: float
    lon: float
    image: Path | Callable[[], Image.Image]

    def pil(self) -> Image.Image:
        if isinstance(self.image, Path):
            return load_image(self.image)
        return self.image().convert("RGB")


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
        raise BadInputError(f"{root}: no geotagged photo to put in the gallery")
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


def build_gallery(images: str | Path, out: str | Path, embedder: Any, *, index_kind: str = "auto",
                  chunk_size: int = 512, show_progress: bool = True, overwrite: bool = False) -> Gallery:
    """Embed every geotagged photo of ``images`` into a gallery at ``out``; resumable.

    Parameters
    ----------
    images
        A folder of photos with EXIF GPS, a ``.csv`` / ``.jsonl`` manifest (path, lat, lon), a dataset
        folder made by `gaea data build`, or a Hugging Face dataset (``hf:owner/name[:split]`` or a
        ``save_to_disk`` folder) with image, lat and lon.
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
    """
    out = Path(out)
    items = list(iter_gallery_items(images))
    if not items:
        raise BadInputError(f"{images}: found no geotagged photo (EXIF GPS, or lat/lon in the manifest)")
    with open_run(out, job="gaea gallery build", fingerprint=encoder_fingerprint(embedder), overwrite=overwrite):
        return _build_from_items(items, images, out, embedder, index_kind=index_kind, chunk_size=chunk_size,
                                 show_progress=show_progress)


def encoder_fingerprint(embedder: Any) -> dict[str, Any]:
    """What a gallery's embeddings depend on: a resumed build must embed with the same encoder."""
    name = embedder.model_name
    encoder = str(Path(name).resolve()) if Path(name).exists() else name  # a local folder, however it was named
    return {"encoder": encoder, "library": getattr(embedder, "library", None), "dim": embedder.dim}


def _build_from_items(items: list[GalleryItem], images: str | Path, out: Path, embedder: Any, *, index_kind: str,
                      chunk_size: int, show_progress: bool) -> Gallery:
    from tqdm.auto import tqdm

    chunks_dir = out / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    done, skipped = _finished_chunk_ids(chunks_dir)
    todo = [item for item in items if item.id not in done and item.id not in skipped]
    log.info("%d photos in %s: %d already embedded, %d to do", len(items), images, len(done), len(todo))
    progress = tqdm(total=len(items), initial=len(items) - len(todo), desc="gallery", unit="photo",
                    disable=not show_progress)
    next_chunk = _next_chunk_number(chunks_dir)
    for start in range(0, len(todo), chunk_size):
        _embed_chunk(todo[start:start + chunk_size], embedder, chunks_dir / f"{next_chunk:05d}")
        next_chunk += 1
        progress.update(len(todo[start:start + chunk_size]))
    progress.close()
    return _finish_from_chunks(out, chunks_dir, embedder, images, index_kind)


def _embed_chunk(items: list[GalleryItem], embedder: Any, stem: Path) -> None:
    """Embed ``items`` and save them as one chunk; unreadable photos are recorded as skipped."""
    pils, kept, skipped = [], [], []
    for item in items:
        try:
            pils.append(item.pil())
            kept.append(item)
        except BadInputError as error:
            log.warning("skipping %s: %s", item.id, error)
            skipped.append({"id": item.id, "skipped": str(error)})
    vectors = embedder.embed(pils) if pils else np.zeros((0, embedder.dim), dtype=np.float32)
    rows = [{"id": i.id, "source": i.source, "lat": i.lat, "lon": i.lon} for i in kept] + skipped
    _save_npy(stem.with_suffix(".npy"), vectors)
    # The .jsonl is written after the .npy: a chunk counts only once both exist.
    atomic_write_jsonl(stem.with_suffix(".jsonl"), rows)


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


def _finish_from_chunks(out: Path, chunks_dir: Path, embedder: Any, images: str | Path, index_kind: str) -> Gallery:
    vectors, rows, skipped = [], [], []
    for stem in _finished_chunks(chunks_dir):
        chunk_rows = list(read_jsonl(stem.with_suffix(".jsonl")))
        rows += [row for row in chunk_rows if "skipped" not in row]
        skipped += [row for row in chunk_rows if "skipped" in row]
        vectors.append(np.load(stem.with_suffix(".npy")))
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), dtype=np.float32)
    lats = np.array([row["lat"] for row in rows], dtype=np.float64)
    lons = np.array([row["lon"] for row in rows], dtype=np.float64)
    _write_finished_gallery(
        out, embeddings, lats, lons, [row["id"] for row in rows], [row["source"] for row in rows],
        place_names(lats, lons), index_kind=index_kind,
        manifest={"encoder": embedder.model_name, "built_from": str(images), "skipped": skipped},
    )
    return Gallery.load(out)


# -- reading the inputs -----------------------------------------------------------------------------


def iter_gallery_items(images: str | Path) -> Iterator[GalleryItem]:
    """The geotagged photos of ``images`` (see `build_gallery` for the accepted inputs).

    Raises
    ------
    BadInputError
        When ``images`` does not exist or is of no known kind.
    """
    text = str(images)
    if text.startswith("hf:"):
        yield from _items_from_hf(text[3:])
        return
    path = Path(images)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "qa.jsonl").is_file():
        yield from _items_from_qa_dataset(path)
    elif path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()):
        yield from _items_from_hf(str(path))
    elif path.is_dir():
        yield from _items_from_folder(path)
    elif path.suffix.lower() == ".csv":
        yield from _items_from_csv(path)
    elif path.suffix.lower() in (".jsonl", ".json"):
        yield from _items_from_jsonl(path)
    else:
        raise BadInputError(f"{path}: expected a folder of photos, a .csv / .jsonl manifest, a dataset folder "
                            "or hf:owner/name")


def _items_from_folder(folder: Path) -> Iterator[GalleryItem]:
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        point = read_exif_gps(path)
        if point is None:
            log.info("%s: no GPS position in its EXIF; left out", path)
            continue
        yield GalleryItem(str(path.relative_to(folder)), str(path), point[0], point[1], path)


def read_exif_gps(path: str | Path) -> tuple[float, float] | None:
    """(lat, lon) from a photo's EXIF GPS block, or None when it has none (or an unusable one)."""
    try:
        return exif.read_exif_gps(path)
    except exif.PhotoRejected as rejected:
        log.info("%s", rejected)
        return None


def _coordinate(row: dict[str, Any], names: tuple[str, ...], where: str) -> float:
    for name in names:
        if row.get(name) not in (None, ""):
            try:
                return float(row[name])
            except (TypeError, ValueError) as error:
                raise BadInputError(f"{where}: {name} {row[name]!r} is not a number") from error
    raise BadInputError(f"{where}: no {' / '.join(names)} value")


def _item_from_row(row: dict[str, Any], base: Path, where: str) -> GalleryItem:
    image = row.get("path") or row.get("image") or row.get("file")
    if not image:
        raise BadInputError(f"{where}: no path / image / file column")
    lat = _coordinate(row, ("lat", "latitude", "LAT"), where)
    lon = _coordinate(row, ("lon", "lng", "longitude", "LON"), where)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadInputError(f"{where}: ({lat}, {lon}) is not a valid latitude, longitude")
    path = Path(image) if Path(image).is_absolute() else base / image
    return GalleryItem(str(row.get("id") or image), str(path), lat, lon, path)


def _items_from_csv(path: Path) -> Iterator[GalleryItem]:
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            yield _item_from_row(row, path.parent, f"{path}:{line}")


def _items_from_jsonl(path: Path) -> Iterator[GalleryItem]:
    for line, row in enumerate(read_jsonl(path), start=1):
        yield _item_from_row(row, path.parent, f"{path}:{line}")


def _items_from_qa_dataset(folder: Path) -> Iterator[GalleryItem]:
    """Unique images with coordinates of a dataset made by `gaea data build`."""
    from gaea.records import read_records

    seen: set[str] = set()
    for record in read_records(folder):
        if record.image in seen or record.lat is None or record.lon is None:
            continue
        seen.add(record.image)
        path = folder / record.image
        yield GalleryItem(record.image, record.source or str(path), record.lat, record.lon, path)


def _items_from_hf(spec: str) -> Iterator[GalleryItem]:
    """Rows of a Hugging Face dataset with image and lat/lon (or latitude/longitude) columns."""
    import datasets

    if Path(spec).is_dir():
        dataset = datasets.load_from_disk(spec)
        name = Path(spec).name
    else:
        name, _, split = spec.partition(":")
        prepare_hub_dataset(name)
        dataset = datasets.load_dataset(name, split=split or "train")
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[next(iter(dataset))]
    if "image" not in dataset.column_names:
        raise BadInputError(f"{spec}: the dataset has no image column (columns: {', '.join(dataset.column_names)})")
    coordinates = dataset.remove_columns(["image"])
    for row_number, row in enumerate(coordinates):
        where = f"{spec} row {row_number}"
        lat = _coordinate(row, ("lat", "latitude", "LAT"), where)
        lon = _coordinate(row, ("lon", "lng", "longitude", "LON"), where)
        yield GalleryItem(str(row.get("id") or f"{name}:{row_number}"), f"hf:{name}", lat, lon,
                          _hf_image_loader(dataset, row_number))


def _hf_image_loader(dataset: Any, row: int) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        image = dataset[row]["image"]
        if not isinstance(image, Image.Image):
            raise BadInputError(f"row {row} of the dataset: image is {type(image).__name__}, not a decoded image")
        return image

    return load
