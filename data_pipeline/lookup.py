"""Fast feature lookup for QA generation: what each OSM feature *is* is worked out once per feature, not
once per (photo, feature) pair.

A `FeatureTable` holds, for every feature, its category words, a bit mask of the distractor categories
it would contradict, and the fixed part of its evidence. A photo's surroundings are then just two
arrays (`Nearby`: table rows and distances, nearest first). For an extract read into memory the table
covers the whole extract and is queried through its own k-d tree, so a lookup makes no per-feature Python
objects; for a feature store each block read from disk gets its table once, and a chunk's table gathers
the rows its photos found; for other sources (Overpass) a table is built from the features
`features_many` returned for a chunk. All three give the same records for the same features.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_pipeline.labels import category_label, distractor_labels
from gaea.geo import EARTH_RADIUS_KM
from gaea.osm._spatial import Pairs, PointIndex
from gaea.osm.store import FeatureStore
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

    def __init__(self, features: Sequence[Any], *, covers_queries: bool = False,
                 bounds: tuple[float, float, float, float] | None = None):
        # An extract covers at least its features' bounding box; an Overpass answer covers each circle queried.
        self.covers_queries = covers_queries
        self.features: list[Any] = []
        self.category: list[tuple[str, str] | None] = []
        self.labels: list[str] = []
        self._label_ids: dict[str, int] = {}
        # Plain lists for the per-photo loop: list indexing by int is the cheapest lookup Python has.
        self.row_key: list[str] = []
        self.row_label: list[str] = []
        self.row_name: list[str] = []
        self.lat, self.lon = np.empty(0), np.empty(0)
        self.label_id = np.empty(0, np.int32)
        self.named, self.background = np.empty(0, bool), np.empty(0, bool)
        self.distractor_bits = np.empty(0, np.uint64)
        self.extend(features)
        count = len(self.features)
        # (min lat, min lon, max lat, max lon) of the extract: its features' box, unless told (a store's chunk).
        self.bounds = bounds or ((self.lat.min(), self.lon.min(), self.lat.max(), self.lon.max()) if count else None)
        # Row -> the parts of its evidence entry that do not depend on the photo, made on first use.
        self._evidence_heads: dict[int, tuple] = {}
        self._index: PointIndex | None = None

    def extend(self, features: Sequence[Any]) -> None:
        """Add rows for `features` (their facts worked out here, once): a store block's table grows as photos
        find more of its rows."""
        features = list(features)
        category = [f.category for f in features]
        label_ids = self._label_ids
        label_id = np.full(len(features), -1, dtype=np.int32)
        for row, row_category in enumerate(category):
            if row_category is not None:
                label = category_label(*row_category)
                label_id[row] = label_ids.setdefault(label, len(label_ids))
        self.labels[len(self.labels):] = list(label_ids)[len(self.labels):]
        self.features.extend(features)
        self.category.extend(category)
        self.row_key.extend(c[0] if c else "" for c in category)
        self.row_label.extend(self.labels[i] if i >= 0 else "" for i in label_id.tolist())
        self.row_name.extend(f.name for f in features)
        grown = {
            "lat": np.fromiter((f.lat for f in features), float, len(features)),
            "lon": np.fromiter((f.lon for f in features), float, len(features)),
            "label_id": label_id,
            "named": np.array([bool(f.name) for f in features], dtype=bool),
            "background": np.array([c is not None and c[0] in BACKGROUND_KEYS for c in category], dtype=bool),
            "distractor_bits": np.array([_distractor_bits(f, c) for f, c in zip(features, category, strict=True)],
                                        dtype=np.uint64),
        }
        for name, added in grown.items():
            setattr(self, name, np.concatenate([getattr(self, name), added.astype(getattr(self, name).dtype)]))
        self._index = None

    @classmethod
    def gathered(cls, tables: Sequence[FeatureTable], which: np.ndarray, rows: np.ndarray, *,
                 bounds: tuple[float, float, float, float] | None) -> FeatureTable:
        """A table of row `rows[i]` of `tables[which[i]]` for each i, its facts copied from those tables
        (nothing worked out again); `bounds` are the extract's."""
        offsets = np.cumsum([0] + [len(t) for t in tables])
        take = offsets[:-1][which] + rows if len(tables) else np.empty(0, np.int64)
        picks = list(zip(which.tolist(), rows.tolist(), strict=True))
        table = cls.__new__(cls)
        for name in ("features", "category", "row_key", "row_name"):
            columns = [getattr(t, name) for t in tables]
            setattr(table, name, [columns[t][r] for t, r in picks])
        for name, dtype in (("lat", float), ("lon", float), ("named", bool), ("background", bool),
                            ("distractor_bits", np.uint64)):
            setattr(table, name, np.concatenate([getattr(t, name) for t in tables] or [np.empty(0, dtype)])[take])
        label_ids: dict[str, int] = {}
        remapped = [np.append([label_ids.setdefault(label, len(label_ids)) for label in t.labels], -1).astype(np.int32)
                    [t.label_id] for t in tables]  # label -1 picks the appended -1
        table.label_id = np.concatenate(remapped or [np.empty(0, np.int32)])[take]
        table.labels, table._label_ids = list(label_ids), label_ids
        table.row_label = [table.labels[i] if i >= 0 else "" for i in table.label_id.tolist()]
        table.covers_queries, table.bounds = False, bounds
        table._evidence_heads, table._index = {}, None
        return table

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

        One ball query per point in the table's k-d tree, then a few numpy operations for the whole batch,
        so the cost per point is a small constant plus its features, however spread out the points are.
        """
        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        if self._index is None:
            self._index = PointIndex(self.lat, self.lon)
        return self.nearby_of_pairs(lats, lons, radius_m, self._index.pairs(lats, lons, radius_m))

    def nearby_of_pairs(self, lats: np.ndarray, lons: np.ndarray, radius_m: float, pairs: Pairs) -> list[Nearby]:
        """`nearby` from the (point, row) pairs of a radius search over this table's rows."""
        distances = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(pairs.chords / 2, 1.0))  # chord -> great circle
        keep = distances <= radius_m
        points, rows, distances = pairs.points[keep], pairs.rows[keep], distances[keep]
        # One float key (point, then distance) sorts several times faster than a two-key lexsort; the
        # point step exceeds any distance on Earth.
        order = _argsort_ties_by_row(points * 4.1e7 + distances, rows)
        return self._split(len(lats), points[order], rows[order], distances[order],
                           self._covered(lats, lons, radius_m))

    def _covered(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> np.ndarray:
        """Whether each circle lies inside the extract's bounding box (conservatively: inside the extract)."""
        if self.covers_queries:
            return np.ones(len(lats), dtype=bool)
        if self.bounds is None:
            return np.zeros(len(lats), dtype=bool)
        south, west, north, east = self.bounds
        dlat = np.degrees(radius_m / EARTH_RADIUS_M)
        dlon = dlat / np.maximum(np.cos(np.radians(np.abs(lats) + dlat)), 1e-9)
        return (lats - dlat >= south) & (lats + dlat <= north) & (lons - dlon >= west) & (lons + dlon <= east)

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


def _argsort_ties_by_row(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The order of `keys`, equal keys (two features at one spot) in row order, so results are deterministic.

    Without ties the sorting order is unique, so numpy's vectorised (unstable) sort gives it; only when two
    keys are equal is the two-key sort needed.
    """
    order = np.argsort(keys)
    ordered = keys[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        return np.lexsort((rows, keys))
    return order


def _distractor_bits(feature: Any, category: tuple[str, str] | None) -> int:
    """Bit i set when the feature's category label is distractor i's, or it carries distractor i's tag."""
    by_label, by_tag = _distractor_masks()
    bits = by_label.get(category_label(*category), 0) if category else 0
    for tag in feature.tags.items():
        bits |= by_tag.get(tag, 0)
    return bits


@functools.lru_cache(maxsize=1)
def _distractor_masks() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """The distractor bits of each label and of each (key, value) tag: a few lookups per feature instead of a
    pass over every distractor."""
    by_label: dict[str, int] = {}
    by_tag: dict[tuple[str, str], int] = {}
    for bit, (label, tag) in enumerate(distractor_labels()):
        by_label[label] = by_label.get(label, 0) | 1 << bit
        by_tag[tag] = by_tag.get(tag, 0) | 1 << bit
    return by_label, by_tag


def nearby_for(source: Any, points: Sequence[GeoPoint], radius_m: float, *,
               table: FeatureTable | None = None) -> list[Nearby]:
    """The `Nearby` of each point: through `table` when the source is a loaded extract, through the blocks
    around the points for a feature store, else from `features_many`."""
    lats, lons = np.array([p.lat for p in points], dtype=float), np.array([p.lon for p in points], dtype=float)
    if table is not None:
        return table.nearby(lats, lons, radius_m)
    if isinstance(source, FeatureStore):
        window = source.window(lats, lons, radius_m)
        tables, rows = [], np.empty(len(window.block_of), np.int64)
        for block, mine in window.by_block():
            decoded = block.memo(_DecodedRows, lambda block=block: _DecodedRows(len(block)))
            rows[mine] = decoded.rows(block, window.row_in_block[mine])
            tables.append(decoded.table)
        chunk = FeatureTable.gathered(tables, window.block_of, rows, bounds=source.feature_bounds)
        return chunk.nearby_of_pairs(lats, lons, radius_m, window.pairs)
    return FeatureTable.from_results(source.features_many(list(points), radius_m))[1]


class _DecodedRows:
    """The table of the rows of one store block that photos have found so far, grown as they find more: only
    those rows are decoded and worked out, once while the block stays cached (a photo finds a few hundred
    features of the thousands its blocks hold)."""

    def __init__(self, size: int):
        self.table = FeatureTable(())
        self._position = np.full(size, -1, np.int64)  # block row -> table row (-1: not decoded yet)

    def rows(self, block: Any, rows: np.ndarray) -> np.ndarray:
        """The table rows of block rows `rows`, decoding those not seen before."""
        missing = np.unique(rows[self._position[rows] < 0])
        if len(missing):
            self._position[missing] = np.arange(len(self.table), len(self.table) + len(missing))
            self.table.extend(block.features_at(missing.tolist()))
        return self._position[rows]


def table_for(source: Any) -> FeatureTable | None:
    """A table over every feature of a loaded extract (a source with `all_features`), else None."""
    features = getattr(source, "all_features", None)
    return FeatureTable(features) if features is not None else None
