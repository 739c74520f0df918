"""Distance metrics of a location model's best candidate, the same ones `gaea eval geo` reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from gaea.errors import BadInputError
from gaea.geo.distance import distance_summary, haversine_km


def evaluate_predictions(model: Any, embeddings: np.ndarray, coords: np.ndarray, *, batch_size: int = 1024,
                         **options: Any) -> dict[str, Any]:
    """Accuracy at 1 / 25 / 200 / 750 / 2,500 km (percent), median error and mean GeoScore of the model's
    top candidate for each photo, plus ``count``.

    Parameters
    ----------
    model
        A `LocationModel`.
    embeddings, coords
        (n x dim) image embeddings and their true (n x 2) latitude, longitude.
    options
        Decoding options passed to ``model.predict_arrays``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if len(embeddings) == 0:
        raise BadInputError("nothing to evaluate: no embeddings")
    if coords.shape != (len(embeddings), 2):
        raise BadInputError(f"{len(embeddings)} embeddings need ({len(embeddings)}, 2) coordinates, got {coords.shape}")
    lat, lon, _ = model.predict_arrays(embeddings, 1, batch_size=batch_size, **options)
    return points_summary(lat[:, 0], lon[:, 0], coords)


def points_summary(lat: np.ndarray, lon: np.ndarray, coords: np.ndarray) -> dict[str, Any]:
    """`distance_summary` of predicted points against true (n x 2) coordinates, with ``count``."""
    distances = haversine_km(lat, lon, coords[:, 0], coords[:, 1])
    return {**distance_summary(distances), "count": len(coords)}
