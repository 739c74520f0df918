"""A spatial index of points: a k-d tree on unit-sphere coordinates."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from gaea.geo import EARTH_RADIUS_KM, haversine_km, unit_vectors

EARTH_RADIUS_M = EARTH_RADIUS_KM * 1000.0


class PointIndex:
    """Finds the indexed points within a radius of query points, nearest first.

    A k-d tree over 3-D unit vectors has no trouble at the poles or the antimeridian, and a
    great-circle radius maps exactly onto a straight-line (chord) radius in that space.
    """

    def __init__(self, lats: np.ndarray, lons: np.ndarray):
        self._lats = np.asarray(lats, dtype=float)
        self._lons = np.asarray(lons, dtype=float)
        self._tree = cKDTree(unit_vectors(self._lats, self._lons)) if len(self._lats) else None

    def __len__(self) -> int:
        return len(self._lats)

    def within(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query point, (indices, distances in metres) of the points within `radius_m`, nearest first.

        Ties in distance keep index order, so results are deterministic.
        """
        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        if self._tree is None:
            return [(np.empty(0, dtype=int), np.empty(0)) for _ in lats]
        angle = min(radius_m / EARTH_RADIUS_M, np.pi)
        # A hair of slack on the chord so rounding never loses a point the exact distance keeps.
        chord = 2 * np.sin(angle / 2) * (1 + 1e-9) + 1e-12
        candidates = self._tree.query_ball_point(unit_vectors(lats, lons), r=chord)
        results = []
        for lat, lon, found in zip(lats, lons, candidates, strict=True):
            idx = np.asarray(sorted(found), dtype=int)
            dist = haversine_km(lat, lon, self._lats[idx], self._lons[idx]) * 1000.0
            keep = dist <= radius_m
            idx, dist = idx[keep], dist[keep]
            order = np.argsort(dist, kind="stable")
            results.append((idx[order], dist[order]))
        return results
