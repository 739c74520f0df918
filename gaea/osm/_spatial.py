"""Great-circle distances and a spatial index of points (a k-d tree on unit-sphere coordinates)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: Mean Earth radius (IUGG), metres.
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: np.ndarray | float, lon1: np.ndarray | float, lat2: np.ndarray | float, lon2: np.ndarray | float):
    """Great-circle distance in metres between points given in degrees (broadcasts like numpy)."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def unit_xyz(lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Points on the unit sphere, one row per (lat, lon) in degrees."""
    phi, lmb = np.radians(lats), np.radians(lons)
    return np.column_stack((np.cos(phi) * np.cos(lmb), np.cos(phi) * np.sin(lmb), np.sin(phi)))


class PointIndex:
    """Finds the indexed points within a radius of query points, nearest first.

    A k-d tree over 3-D unit vectors has no trouble at the poles or the antimeridian, and a
    great-circle radius maps exactly onto a straight-line (chord) radius in that space.
    """

    def __init__(self, lats: np.ndarray, lons: np.ndarray):
        self._lats = np.asarray(lats, dtype=float)
        self._lons = np.asarray(lons, dtype=float)
        self._tree = cKDTree(unit_xyz(self._lats, self._lons)) if len(self._lats) else None

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
        candidates = self._tree.query_ball_point(unit_xyz(lats, lons), r=chord)
        results = []
        for lat, lon, found in zip(lats, lons, candidates, strict=True):
            idx = np.asarray(sorted(found), dtype=int)
            dist = haversine_m(lat, lon, self._lats[idx], self._lons[idx])
            keep = dist <= radius_m
            idx, dist = idx[keep], dist[keep]
            order = np.argsort(dist, kind="stable")
            results.append((idx[order], dist[order]))
        return results
