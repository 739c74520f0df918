"""A spatially structured SYNTHETIC benchmark for location models, built on real photo coordinates.

No image encoder with real weights can run here, so there are no real image embeddings to train on. This
module makes stand-ins that behave like them where it matters: the 100k MP-16 photo coordinates of
GeoCLIP's gallery (real places, with their real clustering in cities and coasts) each get an "image
embedding" computed from a fixed smooth random function of the position plus noise. Nearby photos look
alike, as real ones do, at every scale from continents down to tens of kilometres (random Fourier features
of the unit vector at wavelengths from about 20,000 km to about 80 km, mixed by a fixed random MLP), and
the noise hides part of the signal, as everything in a photo that does not depend on where it was taken
does. The numbers it gives are about the models' mechanics, never about real-photo accuracy.

The function is fixed (``FIELD_SEED``), so every caller sees the same world; the split and the noise
follow ``seed``. Tests and `benchmarks/location_models.py` both use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaea.geo.distance import haversine_km, unit_vectors

#: The fixed seed of the position -> embedding function.
FIELD_SEED = 20240613
#: Fourier scales (radians^-1 on the unit sphere): wavelengths of about 20,000, 5,000, 1,250, 310 and 80 km.
FIELD_SCALES = (2.0, 8.0, 32.0, 128.0, 512.0)
FIELD_FEATURES = 48
FIELD_HIDDEN = 256

DEFAULT_DIM = 64
DEFAULT_NOISE = 1.2

#: Encoder name written into synthetic galleries and models, so they can never pass for a real one.
SYNTHETIC_ENCODER = "synthetic-field-v1"


@dataclass(frozen=True)
class SyntheticBenchmark:
    """Train and test splits of synthetic embeddings with their real coordinates ((n x 2) lat, lon)."""

    train_embeddings: np.ndarray
    train_coords: np.ndarray
    test_embeddings: np.ndarray
    test_coords: np.ndarray


def field_signal(lat: np.ndarray, lon: np.ndarray, *, dim: int = DEFAULT_DIM) -> np.ndarray:
    """The noise-free, unit-length embedding of each position: the same for every caller."""
    field = np.random.default_rng(FIELD_SEED)
    points = unit_vectors(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    features = []
    for scale in FIELD_SCALES:
        frequencies = field.normal(0.0, scale, (3, FIELD_FEATURES))
        phases = field.uniform(0.0, 2 * np.pi, FIELD_FEATURES)
        features.append(np.cos(points @ frequencies + phases))
    fourier = np.concatenate(features, axis=1) * np.sqrt(2.0 / (FIELD_FEATURES * len(FIELD_SCALES)))
    mixing_in = field.normal(0.0, 3.0 / np.sqrt(fourier.shape[1]), (fourier.shape[1], FIELD_HIDDEN))
    mixing_out = field.normal(0.0, 1.0 / np.sqrt(FIELD_HIDDEN), (FIELD_HIDDEN, dim))
    signal = np.tanh(fourier @ mixing_in) @ mixing_out
    return signal / np.linalg.norm(signal, axis=1, keepdims=True)


def _add_noise(signal: np.ndarray, draws: np.ndarray, noise: float) -> np.ndarray:
    noisy = signal + noise / np.sqrt(signal.shape[1]) * draws
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def read_coordinates(path: str | Path) -> np.ndarray:
    """(n x 2) lat, lon of a CSV with a LAT, LON header (GeoCLIP's coordinates_100K.csv)."""
    from gaea.location.geoclip import read_gps_gallery

    lat, lon = read_gps_gallery(path)
    return np.stack([lat, lon], axis=1)


def synthetic_benchmark(coordinates_csv: str | Path, *, train: int = 80_000, test: int = 20_000,
                        dim: int = DEFAULT_DIM, noise: float = DEFAULT_NOISE, seed: int = 0) -> SyntheticBenchmark:
    """The benchmark on the coordinates of ``coordinates_csv``: a seeded shuffle, the first ``train`` rows
    to train on and the last ``test`` rows to test on (smaller sizes keep the same test rows' order, so a
    subsampled run is a prefix of the full one)."""
    coords = read_coordinates(coordinates_csv)
    if train + test > len(coords):
        raise ValueError(f"{coordinates_csv}: {len(coords)} rows, fewer than train {train} + test {test}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(coords))
    draws = rng.normal(0.0, 1.0, (len(coords), dim))  # one draw per row, whichever rows a run uses
    train_rows, test_rows = order[:train], order[len(coords) - test:]

    def embed(rows: np.ndarray) -> np.ndarray:
        return _add_noise(field_signal(coords[rows, 0], coords[rows, 1], dim=dim), draws[rows], noise)

    return SyntheticBenchmark(embed(train_rows), coords[train_rows], embed(test_rows), coords[test_rows])


# -- trivial predictors: what a model must beat ------------------------------------------------------


def trivial_predictions(train_coords: np.ndarray, *, levels: tuple[int, ...] = (4, 6, 8, 10),
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Constant guesses that use the training coordinates only: the medoid, and the centre of the most
    populated S2 cell at each of ``levels``. Name -> (lat, lon)."""
    import s2sphere

    rng = np.random.default_rng(seed)
    candidates = train_coords[rng.choice(len(train_coords), min(2000, len(train_coords)), replace=False)]
    sample = train_coords[rng.choice(len(train_coords), min(5000, len(train_coords)), replace=False)]
    spread = haversine_km(candidates[:, None, 0], candidates[:, None, 1], sample[None, :, 0], sample[None, :, 1])
    medoid = candidates[int(np.argmin(spread.mean(axis=1)))]
    guesses = {"medoid": (float(medoid[0]), float(medoid[1]))}
    leaves = [s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(float(a), float(b))) for a, b in train_coords]
    for level in levels:
        ids, counts = np.unique([leaf.parent(level).id() for leaf in leaves], return_counts=True)
        centre = s2sphere.CellId(int(ids[np.argmax(counts)])).to_lat_lng()
        guesses[f"densest-level-{level}-cell"] = (centre.lat().degrees, centre.lng().degrees)
    return guesses
