"""A spatial index of points (a k-d tree on unit-sphere coordinates) and the radius search built on it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from gaea.geo import EARTH_RADIUS_KM, haversine_km, unit_vectors

EARTH_RADIUS_M = EARTH_RADIUS_KM * 1000.0
# Query points per k-d tree call: large enough to amortise the call, small enough for the CPU cache.
_QUERY_BLOCK = 512


@dataclass(frozen=True)
class Pairs:
    """Every (query point, indexed row) pair within a radius, and their straight-line (chord) distance on the
    unit sphere; sorted by point, then row."""

    points: np.ndarray
    rows: np.ndarray
    chords: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))


def chord_of(radius_m: float) -> float:
    """The chord on the unit sphere of a great-circle radius, with a hair of slack so that rounding never loses
    a point the exact distance keeps."""
    return 2 * np.sin(min(radius_m / EARTH_RADIUS_M, np.pi) / 2) * (1 + 1e-9) + 1e-12


class PointIndex:
    """Finds the indexed points within a radius of query points.

    A k-d tree over 3-D unit vectors has no trouble at the poles or the antimeridian, and a great-circle
    radius maps exactly onto a straight-line (chord) radius in that space.
    """

    def __init__(self, lats: np.ndarray, lons: np.ndarray):
        self.lats = np.asarray(lats, dtype=float)
        self.lons = np.asarray(lons, dtype=float)
        vectors = unit_vectors(self.lats, self.lons)
        self._tree = cKDTree(vectors) if len(self.lats) else None
        self._xyz = tuple(np.ascontiguousarray(vectors[:, axis]) for axis in range(3))  # fast gathers by row

    def __len__(self) -> int:
        return len(self.lats)

    def pairs(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> Pairs:
        """All (point, row) pairs within `radius_m` (plus the chord slack; callers keep the exact radius).

        One ball query per point: a tree-against-tree query degenerates when the points are spread out
        (as the photos of a real batch are), while per-point queries cost the same at every density.
        """
        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        if self._tree is None or not len(lats):
            return Pairs.empty()
        chord = chord_of(radius_m)
        vectors = unit_vectors(lats, lons)
        parts = []
        for start in range(0, len(vectors), _QUERY_BLOCK):
            block = vectors[start:start + _QUERY_BLOCK]
            found = self._tree.query_ball_point(block, chord, return_sorted=True)
            counts = np.fromiter(map(len, found), np.int64, len(found))
            rows = np.fromiter(itertools.chain.from_iterable(found), np.int64, int(counts.sum()))
            parts.append((np.repeat(np.arange(start, start + len(block)), counts), rows))
        points = np.concatenate([p for p, _ in parts])
        rows = np.concatenate([r for _, r in parts])
        # The same sum of squares, in the same order, as the tree computes: the chords are bit for bit its own.
        deltas = [vectors[:, axis][points] - self._xyz[axis][rows] for axis in range(3)]
        chords = np.sqrt(deltas[0] * deltas[0] + deltas[1] * deltas[1] + deltas[2] * deltas[2])
        return Pairs(points, rows, chords)

    def within(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query point, (rows, distances in metres) of the points within `radius_m`, nearest first.

        Ties in distance keep row order, so results are deterministic.
        """
        return within_each(lats, lons, self.pairs(lats, lons, radius_m), self.lats, self.lons, radius_m)


def within_each(lats: np.ndarray, lons: np.ndarray, pairs: Pairs, row_lats: np.ndarray, row_lons: np.ndarray,
                radius_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query point, (rows, great-circle distances in metres) of its `pairs` within `radius_m`, nearest
    first, ties in row order. Distances are the haversine of each point against its rows (one call per point,
    so every source computes them the same way, bit for bit)."""
    lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
    bounds = np.searchsorted(pairs.points, np.arange(len(lats) + 1)).tolist()
    results = []
    for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
        idx = pairs.rows[bounds[i]:bounds[i + 1]]
        dist = haversine_km(lat, lon, row_lats[idx], row_lons[idx]) * 1000.0
        keep = dist <= radius_m
        idx, dist = idx[keep], dist[keep]
        order = np.argsort(dist, kind="stable")
        results.append((idx[order], dist[order]))
    return results


def cap_boxes(lats: np.ndarray, lons: np.ndarray, radius_m: float) -> np.ndarray:
    """(min_lon, min_lat, max_lon, max_lat) of a box around each circle of `radius_m`: every point within the
    radius lies inside it (a circle over a pole or the antimeridian gets every longitude)."""
    lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
    angle = min(radius_m / EARTH_RADIUS_M, np.pi) * (1 + 1e-9) + 1e-12
    dlat = np.degrees(angle)
    reach = np.radians(np.abs(lats)) + angle  # the circle's farthest latitude from the equator
    with np.errstate(invalid="ignore", divide="ignore"):
        dlon = np.degrees(np.arcsin(np.minimum(1.0, np.sin(angle) / np.cos(reach))))
    whole = (reach >= np.pi / 2) | (lons - dlon < -180) | (lons + dlon > 180) | ~np.isfinite(dlon)
    return np.column_stack([
        np.where(whole, -180.0, lons - dlon), np.maximum(lats - dlat, -90.0),
        np.where(whole, 180.0, lons + dlon), np.minimum(lats + dlat, 90.0),
    ])
