"""Candidate pools for the SYNTHETIC benchmark of `gaea.location.synthetic` (real MP-16 coordinates, "image
embeddings" from a fixed smooth random field of the position plus noise: no real image weights exist here).

A scripted LMM answers every photo with known offsets from the truth, as real ones err: one answer near the
place, and a cluster of answers agreeing on a wrong place several hundred km away (a model that confuses two
regions says so consistently). With the gallery's neighbours and a location model's top places, that makes
pools where agreement (the median) and fit to the photo (G3, a trained ranker) disagree, which is what
ranking is for. Its figures are about the rankers' mechanics, never about accuracy on real photos.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gaea.geo.distance import accuracy_at, haversine_km
from gaea.location.synthetic import SYNTHETIC_ENCODER
from gaea.types import Candidate, Message

#: Distance (km) of each scripted answer from the truth: one close, three agreeing on one wrong place.
LMM_OFFSETS_KM = (15.0, 600.0, 610.0, 620.0)


def offset_points(lat: np.ndarray, lon: np.ndarray, distance_km: float, bearing_deg: np.ndarray) -> np.ndarray:
    """(n x 2) points ``distance_km`` from each (lat, lon) along ``bearing_deg`` (WGS84 geodesics, pyproj)."""
    from pyproj import Geod

    lon2, lat2, _ = Geod(ellps="WGS84").fwd(lon, lat, bearing_deg, np.full(len(lat), distance_km * 1000.0))
    return np.stack([lat2, lon2], axis=1)


def scripted_answers(coords: np.ndarray, *, offsets_km: Sequence[float] = LMM_OFFSETS_KM,
                     seed: int = 0) -> list[list[str]]:
    """Per photo, the scripted LMM's answers (JSON, as a model writes them) at ``offsets_km`` from the truth:
    the first along a random bearing, the others along one shared wrong bearing, 5 degrees apart."""
    rng = np.random.default_rng(seed)
    near = rng.uniform(0, 360, len(coords))
    wrong = rng.uniform(0, 360, len(coords))
    columns = [offset_points(coords[:, 0], coords[:, 1], km, near if i == 0 else wrong + 5 * i)
               for i, km in enumerate(offsets_km)]
    return [[json.dumps({"latitude": round(float(column[row, 0]), 5), "longitude": round(float(column[row, 1]), 5),
                         "reasoning": "scripted synthetic answer"}) for column in columns]
            for row in range(len(coords))]


class SyntheticEncoder:
    """Stands for the encoder of the synthetic embeddings (a Retriever over a synthetic gallery needs its name
    and width); the embeddings are given, so it never encodes anything."""

    model_name = SYNTHETIC_ENCODER

    def __init__(self, dim: int):
        self.dim = dim

    def embed_one(self, image):
        raise TypeError("synthetic embeddings are given, not computed from photos")


def synthetic_pools(embeddings: np.ndarray, answers: Sequence[Sequence[str]], backend, retriever, location_model, *,
                    k_neighbours: int = 4, k_places: int = 3, **options) -> list[list[Candidate]]:
    """Each photo's pool: the scripted LMM's answers asked of ``backend`` (one request per answer, parsed as
    any model answer), the ``k_neighbours`` most similar gallery photos and the location model's ``k_places``
    top places (decoded with ``options``)."""
    from gaea.assistant import parse_prediction
    from gaea.ranking.candidates import gather_candidates

    pools = []
    for row, embedding in enumerate(embeddings):
        samples = [parse_prediction(backend.generate([Message.user(f"synthetic photo {row}")])) for _ in answers[row]]
        places = location_model.predict(embedding, k_places, **options)[0]
        pools.append(gather_candidates(samples, retriever.search(embedding, k_neighbours), places))
    return pools


def synthetic_photo(embedding: np.ndarray, *, size: int = 56):
    """A synthetic "photo" of an embedding, for rankers that look at pictures: its values as an 8-wide grid of
    coloured cells (three channels of a fixed projection), so photos of nearby places look alike."""
    from PIL import Image

    values = np.asarray(embedding, dtype=np.float64)
    cells = int(np.ceil(np.sqrt(len(values))))
    grid = np.zeros(cells * cells)
    grid[: len(values)] = values / (np.abs(values).max() or 1.0)
    channels = np.stack([grid, np.roll(grid, 1), -grid], axis=-1).reshape(cells, cells, 3)
    pixels = ((channels + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").resize((size, size), Image.NEAREST)


#: Side (pixels) of the synthetic photos the trained ranker sees: 8 x 8 patches of 14 pixels, one per value.
PHOTO_SIZE = 112
#: Settings of `gaea finetune train --task rank` (over the GeoRanker recipe) for the tiny VLM on synthetic
#: pools: CPU float32, photos at PHOTO_SIZE, the merger trained, 3 evidence photos per candidate.
RANKER_TRAINING = {
    "torch_dtype": "float32", "bf16": False, "gradient_checkpointing": False,
    "min_pixels": PHOTO_SIZE * PHOTO_SIZE, "max_pixels": PHOTO_SIZE * PHOTO_SIZE, "learning_rate": 5e-3,
    "eval_ratio": 0.1, "train_merger": True, "lora_r": 8, "lora_alpha": 16, "logging_steps": 50,
    "rank_candidates": 16, "rank_evidence_images": 3, "rank_photos_per_candidate": 3,
}


def render_photo(path: Path, embedding: np.ndarray, *, size: int = PHOTO_SIZE) -> Path:
    """The synthetic photo of an embedding as a file (written once: gallery photos recur across pools)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(embedding, size=size).save(path)
    return path


def with_evidence_photos(pools: Sequence[Sequence[Candidate]], gallery, count: int) -> list[list[Candidate]]:
    """The pools with each candidate's ``count`` nearest gallery photos as evidence, their synthetic photos
    written to the files the gallery names as their sources."""
    from gaea.ranking.candidates import GalleryPlaces

    near = GalleryPlaces(gallery)
    pools = [near.with_photos(pool, count) for pool in pools]
    for photo in {p for pool in pools for c in pool for p in c.photos}:
        render_photo(Path(photo.source), gallery.embeddings[int(photo.id)])
    return pools


def write_ranking_set(out: Path, pools: Sequence[Sequence[Candidate]], embeddings: np.ndarray,
                      coords: np.ndarray) -> Path:
    """A ranking set (as `gaea data build-ranking` writes: `finetune.rank.read_ranking_set`) of these pools:
    each photo's synthetic photo under ``out/photos`` and each candidate's true distance."""
    from dataclasses import asdict

    from gaea.io import atomic_write_jsonl

    rows = []
    for row, (pool, (lat, lon)) in enumerate(zip(pools, coords, strict=True)):
        image = render_photo(out / "photos" / f"photo-{row:05d}.png", embeddings[row])
        candidates = [{**asdict(c), "distance_km": float(haversine_km(c.lat, c.lon, lat, lon))} for c in pool]
        rows.append({"id": str(row), "image": str(image), "lat": float(lat), "lon": float(lon),
                     "candidates": candidates})
    atomic_write_jsonl(out / "ranking.jsonl", rows)
    return out


def ranking_table(chosen: dict[str, Sequence[Candidate]], pools: Sequence[Sequence[Candidate]],
                  coords: np.ndarray) -> dict[str, dict[str, float]]:
    """Per ranker: how often it picked the candidate nearest the truth (%), and accuracy at 1 / 25 / 200 /
    750 / 2,500 km and median error of its pick; ``chance`` is a pick uniformly at random (expected values),
    ``oracle`` the nearest candidate of every pool."""
    nearest, distances = [], []
    for pool, (lat, lon) in zip(pools, coords, strict=True):
        d = np.asarray(haversine_km(np.array([c.lat for c in pool]), np.array([c.lon for c in pool]), lat, lon))
        distances.append(d)
        nearest.append(pool[int(np.argmin(d))])
    table = {}
    for name, picks in chosen.items():
        d = np.array([float(haversine_km(p.lat, p.lon, lat, lon))
                      for p, (lat, lon) in zip(picks, coords, strict=True)])
        hits = [(p.lat, p.lon) == (n.lat, n.lon) for p, n in zip(picks, nearest, strict=True)]
        table[name] = {"picks_nearest_%": 100.0 * float(np.mean(hits)), **accuracy_at(d),
                       "median_km": float(np.median(d))}
    chance_hits = np.mean([1.0 / len(d) for d in distances])
    chance_acc = {key: float(np.mean([accuracy_at(d)[key] for d in distances])) for key in accuracy_at(distances[0])}
    table["chance"] = {"picks_nearest_%": 100.0 * float(chance_hits), **chance_acc,
                       "median_km": float(np.median(np.concatenate(distances)))}
    oracle = np.array([d.min() for d in distances])
    table["oracle"] = {"picks_nearest_%": 100.0, **accuracy_at(oracle), "median_km": float(np.median(oracle))}
    return table


def markdown_table(table: dict[str, dict[str, float]]) -> str:
    """The `ranking_table` as Markdown, one row per ranker."""
    keys = list(next(iter(table.values())))
    lines = ["| ranker | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{row[key]:.1f}" for key in keys) + " |" for name, row in table.items()]
    return "\n".join(lines)
