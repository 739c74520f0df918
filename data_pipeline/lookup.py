"""Fast feature lookup for QA generation: what each OSM feature *is* is worked out once per feature, not
once per (photo, feature) pair.

A `FeatureTable` holds, for every feature, its category words, a bit mask of the distractor categories
it would contradict, and the fixed part of its evidence. A photo's surroundings are then just two
arrays (`Nearby`: table rows and distances, nearest first). For a local extract the table covers the
whole extract and is queried through its own k-d tree, so a lookup makes no per-feature Python objects;
for other sources (Overpass) a table is built from the features `features_many` returned for a chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from data_pipeline.labels import category_label, distractor_labels
from gaea.geo import EARTH_RADIUS_KM, unit_vectors
from gaea.types import GeoPoint

EARTH_RADIUS_M = EARTH_RADIUS_KM * 1000.0  # the mean radius gaea.osm measures distances with
# Roads, land use and plain buildings say "what is here" but make dull questions when better exists.
BACKGROUND_KEYS = frozenset({"highway", "landuse", "building"})


@dataclass(frozen=True)
class Nearby:
    """The features around one photo: rows of `table` and their distances in metres, nearest first.

    `label_first` holds the positions (into `rows`) of the nearest feature of each category, nearest
    first; `present_bits` has bit i set when distractor category i is present (see `FeatureTable`).
    `covered` says whether the source saw the whole circle: only then may a question claim that
    something is *not* there. `first_rows` and `first_distances` are the rows and distances at
    `label_first`, as Python lists (cut from lists made once per batch: templates read them item by item).
    """

    table: FeatureTable
    rows: np.ndarray
    distances: np.ndarray
    label_first: np.ndarray
    present_bits: int
    covered: bool
    first_rows: list[int]
    first_distances: list[float]


class FeatureTable:
    """Per-feature facts for QA generation, computed once.

    Attributes
    ----------
    features
        The OSM features, row by row.
    label_id
        Row -> index into `labels` (-1 for a feature without a category).
    labels
        Category words, e.g. "post office".
    category
        Row -> (key, value) of the category, or None.
    named, background
        Whether a row has a name; whether its category is a road, land use or plain building.
    distractor_bits
        Row -> bit i set when the feature is an instance of `distractor_labels()[i]`, so that
        category can never be claimed absent near it.
    """

    def __init__(self, features: Sequence[Any], *, covers_queries: bool = False):
        self.features = tuple(features)
        # An extract covers at least its features' bounding box; an Overpass answer covers each circle queried.
        self.covers_queries = covers_queries
        count = len(self.features)
        self.lat = np.fromiter((f.lat for f in self.features), float, count)
        self.lon = np.fromiter((f.lon for f in self.features), float, count)
        self.category: list[tuple[str, str] | None] = [f.category for f in self.features]
        self.labels: list[str] = []
        label_ids: dict[str, int] = {}
        self.label_id = np.full(count, -1, dtype=np.int32)
        for row, category in enumerate(self.category):
            if category is not None:
                label = category_label(*category)
                self.label_id[row] = label_ids.setdefault(label, len(label_ids))
        self.labels = list(label_ids)
        # Plain lists for the per-photo loop: list indexing by int is the cheapest lookup Python has.
        self.row_key = [c[0] if c else "" for c in self.category]
        self.row_label = [self.labels[i] if i >= 0 else "" for i in self.label_id.tolist()]
        self.row_name = [f.name for f in self.features]
        self.named = np.array([bool(f.name) for f in self.features], dtype=bool)
        self.background = np.array([c is not None and c[0] in BACKGROUND_KEYS for c in self.category], dtype=bool)
        self.distractor_bits = np.array([_distractor_bits(f, c) for f, c in zip(self.features, self.category,
                                                                               strict=True)], dtype=np.uint64)
        # Row -> the parts of its evidence entry that do not depend on the photo, made on first use.
        self._evidence_heads: dict[int, tuple] = {}
        self._tree: cKDTree | None = None

    def __len__(self) -> int:
        return len(self.features)

    def evidence(self, row: int, distance_m: float, keys: Sequence[str]) -> dict[str, Any]:
        """The evidence entry of one feature, with only the tags in `keys`."""
        head = self._evidence_heads.get(row)
        if head is None:
            feature = self.features[row]
            head = self._evidence_heads[row] = (feature.osm_type, feature.osm_id, feature.name, feature.tags,
                                                round(feature.lat, 7), round(feature.lon, 7))
        osm_type, osm_id, name, tags, lat, lon = head
        used = {}
        for key in keys:  # a plain loop: `keys` holds one or two keys, too few to pay for a comprehension's frame
            if key in tags:
                used[key] = tags[key]
        return {
            "osm_type": osm_type,
            "osm_id": osm_id,
            "name": name,
            "tags": used,
            "lat": lat,
            "lon": lon,
            "distance_m": round(float(distance_m), 1),
        }

    def nearby(self, lats: Sequence[float], lons: Sequence[float], radius_m: float) -> list[Nearby]:
        """The features within `radius_m` of each point, nearest first (great-circle distances).

        The whole batch is handled in a few numpy operations: one tree-against-tree query, one sort,
        so the cost per point is a small constant plus its features.
        """
        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        if not len(self.features) or not len(lats):
            return self._split(len(lats), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0),
                               self._covered(lats, lons, radius_m))
        if self._tree is None:
            self._tree = cKDTree(unit_vectors(self.lat, self.lon))
        # Great-circle radius -> chord on the unit sphere, with slack so rounding never loses a feature.
        chord = 2 * np.sin(min(radius_m / EARTH_RADIUS_M, np.pi) / 2) * (1 + 1e-9) + 1e-12
        # All (point, feature) pairs within the chord in one C call, as flat arrays (no per-point lists).
        pairs = cKDTree(unit_vectors(lats, lons)).sparse_distance_matrix(self._tree, chord, output_type="ndarray")
        points, rows = pairs["i"], pairs["j"]
        distances = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(pairs["v"] / 2, 1.0))  # chord -> great circle
        keep = distances <= radius_m
        points, rows, distances = points[keep], rows[keep], distances[keep]
        # One float key (point, then distance) sorts several times faster than a two-key lexsort; the
        # point step exceeds any distance on Earth.
        order = _argsort_ties_stable(points * 4.1e7 + distances)
        return self._split(len(lats), points[order], rows[order], distances[order],
                           self._covered(lats, lons, radius_m))

    def _covered(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> np.ndarray:
        """Whether each circle lies inside the features' bounding box (conservatively: inside the extract)."""
        if self.covers_queries:
            return np.ones(len(lats), dtype=bool)
        if not len(self.features):
            return np.zeros(len(lats), dtype=bool)
        dlat = np.degrees(radius_m / EARTH_RADIUS_M)
        dlon = dlat / np.maximum(np.cos(np.radians(np.abs(lats) + dlat)), 1e-9)
        return ((lats - dlat >= self.lat.min()) & (lats + dlat <= self.lat.max())
                & (lons - dlon >= self.lon.min()) & (lons + dlon <= self.lon.max()))

    def _split(self, count: int, points: np.ndarray, rows: np.ndarray, distances: np.ndarray,
               covered: np.ndarray) -> list[Nearby]:
        """Per-point `Nearby` from flat arrays sorted by (point, distance)."""
        bounds = np.searchsorted(points, np.arange(count + 1))
        bits = self.distractor_bits[rows]
        present = np.zeros(count, dtype=np.uint64)
        filled = np.flatnonzero(bounds[1:] > bounds[:-1])
        if len(filled):
            present[filled] = np.bitwise_or.reduceat(bits, bounds[filled])
        # The first position of each (point, category) pair in distance order is that category's nearest:
        # a scatter-minimum over the pairs finds them all in one linear pass, no sort of the pairs needed.
        labels = self.label_id[rows].astype(np.int64)
        categorized = np.flatnonzero(labels >= 0)
        pair = points[categorized] * max(1, len(self.labels)) + labels[categorized]
        first = np.full(count * max(1, len(self.labels)), len(rows), dtype=np.int64)
        np.minimum.at(first, pair, categorized)
        firsts = np.sort(first[first < len(rows)])
        first_bounds = np.searchsorted(firsts, bounds)
        # Whole-batch conversions, then plain slicing per point (numpy scalars and tiny arrays are slow).
        first_rows, first_distances = rows[firsts].tolist(), distances[firsts].tolist()
        starts, fstarts = bounds.tolist(), first_bounds.tolist()
        present_list, covered_list = present.tolist(), covered.tolist()
        return [
            Nearby(self, rows[starts[i]:starts[i + 1]], distances[starts[i]:starts[i + 1]],
                   firsts[fstarts[i]:fstarts[i + 1]] - starts[i], present_list[i], bool(covered_list[i]),
                   first_rows[fstarts[i]:fstarts[i + 1]], first_distances[fstarts[i]:fstarts[i + 1]])
            for i in range(count)
        ]

    @classmethod
    def from_results(cls, results: Sequence[Sequence[Any]]) -> tuple[FeatureTable, list[Nearby]]:
        """A table over the features of `features_many` results (with distances set), and each point's `Nearby`."""
        rows_of: dict[tuple[str, int], int] = {}
        unique: list[Any] = []
        points, rows, distances = [], [], []
        for point, features in enumerate(results):
            for feature in features:
                key = (feature.osm_type, feature.osm_id)
                if key not in rows_of:
                    rows_of[key] = len(unique)
                    unique.append(feature)
                points.append(point)
                rows.append(rows_of[key])
                distances.append(feature.distance_m)
        table = cls(unique, covers_queries=True)
        points_arr, rows_arr, dist_arr = (np.asarray(points, np.int64), np.asarray(rows, np.int64),
                                          np.asarray(distances, float))
        order = np.lexsort((rows_arr, dist_arr, points_arr))
        return table, table._split(len(results), points_arr[order], rows_arr[order], dist_arr[order],
                                   np.ones(len(results), dtype=bool))


def _argsort_ties_stable(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")`, several times faster when no two keys are equal.

    Without ties the sorting order is unique, so numpy's vectorised (unstable) sort gives exactly the
    stable order; only when two keys are equal (two features at one spot) is the stable sort needed,
    to keep such ties in the tree's fixed order.
    """
    order = np.argsort(keys)
    ordered = keys[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        return np.argsort(keys, kind="stable")
    return order


def _distractor_bits(feature: Any, category: tuple[str, str] | None) -> int:
    label = category_label(*category) if category else None
    bits = 0
    for bit, (distractor, (key, value)) in enumerate(distractor_labels()):
        if distractor == label or feature.tags.get(key) == value:
            bits |= 1 << bit
    return bits


def nearby_for(source: Any, points: Sequence[GeoPoint], radius_m: float, *,
               table: FeatureTable | None = None) -> list[Nearby]:
    """The `Nearby` of each point: through `table` when the source is a loaded extract, else `features_many`."""
    if table is not None:
        return table.nearby([p.lat for p in points], [p.lon for p in points], radius_m)
    return FeatureTable.from_results(source.features_many(list(points), radius_m))[1]


def table_for(source: Any) -> FeatureTable | None:
    """A table over every feature of a loaded extract (a source with `all_features`), else None."""
    features = getattr(source, "all_features", None)
    return FeatureTable(features) if features is not None else None
