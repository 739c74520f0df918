"""A spatial index of points (a k-d tree on unit-sphere coordinates) and the radius search built on it."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import h3.api.basic_int as h3
import numpy as np
from scipy.spatial import cKDTree

from gaea.geo import EARTH_RADIUS_KM, haversine_km, unit_vectors

EARTH_RADIUS_M = EARTH_RADIUS_KM * 1000.0
_SMALL_INDEX = 4_096  # rows; a store block holds 2,048
_MANY_PAIRS = 400  # pairs per point above which a lone point's own tree-against-tree call is the cheaper way


@dataclass(frozen=True)
class Pairs:
    """Every (query point, indexed row) pair within a radius, and their straight-line (chord) distance on the
    unit sphere; sorted by point (the rows of one point in no particular order)."""

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
        self._vectors = unit_vectors(self.lats, self.lons)
        self._tree = cKDTree(self._vectors) if len(self.lats) else None
        self._pairs_per_point = 0.0  # as seen so far: it decides how lone points are queried

    def __len__(self) -> int:
        return len(self.lats)

    def pairs(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> Pairs:
        """All (point, row) pairs within `radius_m` (plus the chord slack; callers keep the exact radius).

        The points are grouped by H3 cell about the radius wide, and each group is matched against the tree
        in one tree-against-tree call, which returns pairs and distances as arrays. One group of points far
        apart (as the photos of a real batch are, spread over a country) would make that call visit most of
        the tree, hence the compact groups; a point alone in its cell is queried on its own, the same way
        where points find many rows (that call makes no Python objects), or together with the other lone
        points in one ball query where they find few (less overhead per point). Every way finds the same
        pairs and the same chords, bit for bit.
        """
        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        if self._tree is None or not len(lats):
            return Pairs.empty()
        chord = chord_of(radius_m)
        vectors = unit_vectors(lats, lons)
        groups = [np.arange(len(lats))] if len(self) <= _SMALL_INDEX else _groups_by_cell(lats, lons, radius_m)
        lone = [group[0] for group in groups if len(group) == 1] if self._pairs_per_point < _MANY_PAIRS else []
        parts = [self._ball_pairs(np.asarray(lone, dtype=np.int64), vectors, chord)] if lone else []
        for group in groups:
            if len(group) > 1 or not lone:
                found = cKDTree(vectors[group]).sparse_distance_matrix(self._tree, chord, output_type="ndarray")
                parts.append((group[found["i"]], found["j"], found["v"]))
        points, rows, chords = (np.concatenate(column) for column in zip(*parts, strict=True))
        self._pairs_per_point = 0.5 * self._pairs_per_point + 0.5 * len(points) / len(lats)
        order = np.argsort(points, kind="stable")
        return Pairs(points[order], rows[order], chords[order])

    def _ball_pairs(self, points: np.ndarray, vectors: np.ndarray, chord: float) -> tuple[np.ndarray, ...]:
        found = self._tree.query_ball_point(vectors[points], chord, return_sorted=False)
        counts = np.fromiter(map(len, found), np.int64, len(found))
        rows = np.fromiter(itertools.chain.from_iterable(found), np.int64, int(counts.sum()))
        delta = np.repeat(vectors[points], counts, axis=0)
        delta -= self._vectors.take(rows, axis=0)
        # The same sum of squares, in the same order, as the tree computes: the chords are bit for bit its own.
        squares = delta[:, 0] * delta[:, 0]
        squares += delta[:, 1] * delta[:, 1]
        squares += delta[:, 2] * delta[:, 2]
        return np.repeat(points, counts), rows, np.sqrt(squares, out=squares)

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
        idx = np.sort(pairs.rows[bounds[i]:bounds[i + 1]])
        dist = haversine_km(lat, lon, row_lats[idx], row_lons[idx]) * 1000.0
        keep = dist <= radius_m
        idx, dist = idx[keep], dist[keep]
        order = np.argsort(dist, kind="stable")
        results.append((idx[order], dist[order]))
    return results


def _groups_by_cell(lats: np.ndarray, lons: np.ndarray, radius_m: float) -> list[np.ndarray]:
    """The positions of the points, grouped by the H3 cell (about `radius_m` wide) they fall in."""
    resolution = _grouping_resolution(radius_m)
    cells = np.fromiter((h3.latlng_to_cell(lat, lon, resolution) for lat, lon in
                         zip(lats.tolist(), lons.tolist(), strict=True)), np.uint64, len(lats))
    by_cell = np.argsort(cells, kind="stable")
    starts = np.flatnonzero(np.r_[True, cells[by_cell][1:] != cells[by_cell][:-1]]).tolist()
    return np.split(by_cell, starts[1:])


@functools.lru_cache(maxsize=32)
def _grouping_resolution(radius_m: float) -> int:
    """The finest H3 resolution whose cells are about as wide as the radius (an edge at least the radius)."""
    return next((res for res in range(15, -1, -1) if h3.average_hexagon_edge_length(res, unit="m") >= radius_m), 0)


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
