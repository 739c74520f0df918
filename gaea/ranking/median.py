"""The baseline ranker: the candidate nearest the geometric median of the pool (and of supporting gallery
neighbours), the aggregation `Assistant.locate` always used for its G3-style ensemble."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gaea.geo import haversine_km
from gaea.ranking.base import Ranking, ranked
from gaea.types import Candidate, Neighbor


def geometric_median(points: np.ndarray, *, iterations: int = 100, tol: float = 1e-9) -> np.ndarray:
    """The geometric median (Weiszfeld) of (lat, lon) points, computed on unit vectors in 3-D and
    projected back to the sphere; returns (lat, lon)."""
    lat, lon = np.radians(points[:, 0]), np.radians(points[:, 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    median = xyz.mean(axis=0)
    for _ in range(iterations):
        distances = np.linalg.norm(xyz - median, axis=1)
        if np.any(distances < tol):
            median = xyz[np.argmin(distances)]
            break
        weights = 1.0 / distances
        updated = (xyz * weights[:, None]).sum(axis=0) / weights.sum()
        if np.linalg.norm(updated - median) < tol:
            median = updated
            break
        median = updated
    norm = np.linalg.norm(median)
    if norm < tol:
        # Points spread evenly around the globe have no meaningful median: fall back to the first one.
        return points[0]
    x, y, z = median / norm
    return np.array([np.degrees(np.arcsin(np.clip(z, -1, 1))), np.degrees(np.arctan2(y, x))])


class MedianRanker:
    """Scores each candidate by minus its distance (km) to the geometric median of every candidate and of
    the ``support`` neighbours."""

    name = "median"

    def rank(self, image: Any, candidates: Sequence[Candidate], *, embedding: np.ndarray | None = None,
             support: Sequence[Neighbor] = ()) -> Ranking:
        if not candidates:
            return Ranking([], self.name)
        points = np.array([(c.lat, c.lon) for c in candidates] + [(n.lat, n.lon) for n in support], dtype=float)
        median = geometric_median(points)
        distances = np.atleast_1d(haversine_km(points[: len(candidates), 0], points[: len(candidates), 1],
                                               median[0], median[1]))
        return ranked(candidates, -distances, self.name)
