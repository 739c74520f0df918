"""`gaea data build-ranking`: the training set of the trained ranker, from any photos with coordinates and a
gallery (`gaea gallery build`).

For each photo: its candidate pool from the gallery's most similar photos (the photo itself left out, so a
gallery built from the same photos serves) and, optionally, a location model's top places, de-duplicated
within ``dedupe_km`` (`gaea.ranking.gather_candidates`), each candidate with its true distance to the photo
and, as its evidence, up to ``photos_per_candidate`` gallery photos: its own, then those nearest it (as the
trained ranker gets them when it serves with a gallery; the photo itself never, or the evidence would
show the answer).
The folder holds ``ranking.jsonl`` (one photo a line: id, image, lat, lon, candidates with ``distance_km``)
and ``images/`` (copies of the photos that are not files, such as dataset cells). The build is one pass,
written atomically at the end; the folder is a `gaea.runs` run directory (a second build at the same time,
or one with other settings, is refused; ``overwrite`` starts afresh).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gaea.errors import BadInputError, PhotoRejected
from gaea.geo import haversine_km
from gaea.io import atomic_write_jsonl
from gaea.sources import Skipped, open_source, opened_photo, photo_items

log = logging.getLogger(__name__)

RANKING_FILE = "ranking.jsonl"
#: A neighbour this close to the photo, and this similar, is the photo itself (its gallery copy).
_SELF_KM, _SELF_SIMILARITY = 0.001, 0.999


@dataclass
class RankingSummary:
    photos: int = 0
    candidates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items())) or "none"
        return f"photos: {self.photos}  candidates: {self.candidates}  skipped: {skipped}"


def build_ranking_set(images: str | Path, gallery: str | Path, out: str | Path, *, encoder: str | None = None,
                      k_neighbours: int = 8, location_model: str | Path | None = None, k_candidates: int = 5,
                      photos_per_candidate: int = 3, dedupe_km: float = 0.0, overwrite: bool = False) -> RankingSummary:
    """Write the ranking set of the photos of ``images`` into ``out`` (see the module docstring)."""
    from gaea.ranking.candidates import GalleryPlaces
    from gaea.retrieval import Embedder, Gallery, Retriever
    from gaea.runs import open_run

    if k_neighbours < 1 or k_candidates < 1:
        raise BadInputError(f"k_neighbours and k_candidates must be at least 1, got {k_neighbours} and {k_candidates}")
    if photos_per_candidate < 0:
        raise BadInputError(f"photos_per_candidate must be 0 or more, got {photos_per_candidate}")
    loaded = Gallery.load(gallery)
    retriever = Retriever(loaded, Embedder(encoder or loaded.encoder or None))
    model = _location_model(location_model, retriever)
    near = GalleryPlaces(loaded)
    fingerprint = {"images": str(images), "gallery": str(gallery), "encoder": encoder, "k_neighbours": k_neighbours,
                   "location_model": str(location_model) if location_model else None, "k_candidates": k_candidates,
                   "photos_per_candidate": photos_per_candidate, "dedupe_km": dedupe_km}
    summary = RankingSummary()
    with open_run(out, job="gaea data build-ranking", fingerprint=fingerprint, overwrite=overwrite) as root:
        rows = []
        for item in photo_items(open_source(images)):
            if isinstance(item, Skipped):
                summary.skipped[item.reason] = summary.skipped.get(item.reason, 0) + 1
                continue
            try:
                with opened_photo(item) as (image, lat, lon):
                    picture = image.convert("RGB")
            except PhotoRejected as error:
                summary.skipped[error.reason] = summary.skipped.get(error.reason, 0) + 1
                continue
            row = _ranking_row(item, picture, lat, lon, retriever, model, near, k_neighbours=k_neighbours,
                               k_candidates=k_candidates, photos_per_candidate=photos_per_candidate,
                               dedupe_km=dedupe_km, images_dir=root / "images")
            summary.photos += 1
            summary.candidates += len(row["candidates"])
            rows.append(row)
        if not rows:
            raise BadInputError(f"{images}: no usable photo with coordinates ({summary.line()})")
        atomic_write_jsonl(root / RANKING_FILE, rows)
    return summary


def _location_model(directory: str | Path | None, retriever: Any) -> Any:
    if directory is None:
        return None
    from gaea.location import load_location_model

    model = load_location_model(directory)
    if model.embedding_dim != retriever.embedder.dim:
        raise BadInputError(f"{directory}: the location model reads {model.embedding_dim}-dimensional embeddings, "
                            f"the gallery's encoder gives {retriever.embedder.dim}")
    return model


def _ranking_row(item: Any, picture: Any, lat: float, lon: float, retriever: Any, model: Any, near: Any, *,
                 k_neighbours: int, k_candidates: int, photos_per_candidate: int, dedupe_km: float,
                 images_dir: Path) -> dict[str, Any]:
    from gaea.geo import reverse_geocode_many
    from gaea.ranking import gather_candidates

    embedding = retriever.embedder.embed_one(picture)
    found = retriever.search(embedding, k_neighbours + 1)
    neighbours = [n for n in found if not _is_itself(n, item.key, lat, lon)][:k_neighbours]
    places = model.predict(embedding, k_candidates)[0] if model is not None else []
    if places:
        named = reverse_geocode_many(np.array([c.lat for c in places]), np.array([c.lon for c in places]))
        places = [replace(c, place=p.label) for c, p in zip(places, named, strict=True)]
    pool = gather_candidates((), neighbours, places, radius_km=dedupe_km)
    itself = {n.id for n in found if _is_itself(n, item.key, lat, lon)} | {item.key}
    pool = near.with_photos(pool, photos_per_candidate, exclude=itself)
    path = item.image.path
    if path is None:  # a dataset cell: the trainer reads files
        images_dir.mkdir(parents=True, exist_ok=True)
        path = images_dir / f"{len(list(images_dir.iterdir())):06d}.jpg"
        picture.save(path, quality=95)
    candidates = [{**asdict(c), "distance_km": float(haversine_km(c.lat, c.lon, lat, lon))} for c in pool]
    return {"id": item.key, "image": str(Path(path).resolve()), "lat": lat, "lon": lon, "candidates": candidates}


def _is_itself(neighbour: Any, key: str, lat: float, lon: float) -> bool:
    if neighbour.id == key:
        return True
    return neighbour.similarity >= _SELF_SIMILARITY and haversine_km(neighbour.lat, neighbour.lon, lat, lon) <= _SELF_KM
