"""OpenStreetMap features held in memory and found through a spatial index: a small extract read whole
(see :mod:`gaea.osm.extract`), or features you already have (an Overpass answer).

Large extracts go to the on-disk store instead (:mod:`gaea.osm.store`; ``open_osm_source`` chooses).
"""

from __future__ import annotations

import abc
import functools
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from gaea.errors import BadInputError
from gaea.osm._spatial import PointIndex
from gaea.osm.extract import checked_extract_path, header_bounds, read_features
from gaea.osm.features import OSMFeature, has_any_key, validate_keys
from gaea.osm.source import Bounds
from gaea.types import GeoPoint

log = logging.getLogger(__name__)


class RadiusSearch(abc.ABC):
    """The OSMSource methods of a source that finds features by distance itself: checks the query, then asks
    the source's `_found` for each point's features."""

    def features(
        self, point: GeoPoint, radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[OSMFeature]:
        """Features within `radius_m` metres of `point`, nearest first, with ``distance_m`` set.

        Parameters
        ----------
        point
            The query point.
        radius_m
            Search radius in metres (great-circle distance to each feature's point).
        keys
            Keep only features carrying at least one of these tag keys (from ``DISTINGUISHING_KEYS``).
        """
        return self.features_many([point], radius_m, keys=keys)[0]

    def features_many(
        self, points: Sequence[GeoPoint], radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[list[OSMFeature]]:
        """:meth:`features` for each of `points`, answered in batches."""
        check_radius(radius_m)
        wanted = validate_keys(keys)
        lats, lons = points_to_arrays(points)
        return self._found(lats, lons, radius_m, wanted)

    @abc.abstractmethod
    def _found(self, lats: np.ndarray, lons: np.ndarray, radius_m: float,
               keys: frozenset[str] | None) -> list[list[OSMFeature]]:
        """Per point, its features within `radius_m` carrying one of `keys` (None: all), nearest first."""


class LocalOSMSource(RadiusSearch):
    """OSM features held in memory and found by distance through a k-d tree.

    Build it with :meth:`from_file` (an extract on disk) or :meth:`from_features` (records you
    already have, e.g. an Overpass answer).
    """

    def __init__(self, features: Iterable[OSMFeature], *, name: str = "osm-features", bounds: Bounds | None = None):
        self.name = name
        self._features = tuple(features)
        lats = np.fromiter((f.lat for f in self._features), float, len(self._features))
        lons = np.fromiter((f.lon for f in self._features), float, len(self._features))
        self._index = PointIndex(lats, lons)
        #: The area covered: the extract's header box, else the box around the features (None: no features).
        self.bounds = bounds or (
            Bounds(float(lats.min()), float(lons.min()), float(lats.max()), float(lons.max())) if len(lats) else None
        )

    @classmethod
    def from_file(cls, path: str | Path) -> LocalOSMSource:
        """Read an extract (``.osm``, ``.osm.bz2``, ``.xml``, ``.osm.pbf``, ``.pbf``) once.

        Raises
        ------
        BadInputError
            The file is missing or its suffix is not one of those.
        OSMError
            The file could not be parsed.
        """
        path = checked_extract_path(path)
        stat = path.stat()
        return cls(_read_features_cached(str(path), stat.st_mtime_ns, stat.st_size), name=f"osm-file:{path.name}",
                   bounds=header_bounds(path))

    @classmethod
    def from_features(cls, features: Iterable[OSMFeature], *, name: str = "osm-features") -> LocalOSMSource:
        """A source over `features` as given (their ``distance_m`` is ignored and recomputed per query)."""
        return cls(features, name=name)

    def __len__(self) -> int:
        return len(self._features)

    @property
    def all_features(self) -> tuple[OSMFeature, ...]:
        """Every feature of the source, in reading order, with ``distance_m`` unset."""
        return self._features

    def _found(self, lats: np.ndarray, lons: np.ndarray, radius_m: float,
               keys: frozenset[str] | None) -> list[list[OSMFeature]]:
        return found_features(self._features, self._index.within(lats, lons, radius_m), keys)


def check_radius(radius_m: float) -> None:
    """Reject a radius that is not a positive finite number of metres."""
    is_number = isinstance(radius_m, int | float) and not isinstance(radius_m, bool)
    if not is_number or not math.isfinite(radius_m) or radius_m <= 0:
        raise BadInputError(f"radius_m must be a positive number of metres, got {radius_m!r}")


def points_to_arrays(points: Sequence[GeoPoint]) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of `points` as arrays, after checking each is a valid point."""
    lats, lons = [], []
    for i, point in enumerate(points):
        if not isinstance(point, GeoPoint):
            raise BadInputError(f"point {i} is {point!r}; expected a GeoPoint(lat, lon)")
        lats.append(point.lat)
        lons.append(point.lon)
    return np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)


def found_features(features: Sequence[OSMFeature], found: list[tuple[np.ndarray, np.ndarray]],
                   keys: frozenset[str] | None) -> list[list[OSMFeature]]:
    """Per point, copies of `features` at the (rows, distances) found for it, with ``distance_m`` set,
    keeping those with one of `keys` (None: all)."""
    return [
        [
            _with_distance(features[i], d)
            for i, d in zip(idx.tolist(), dist.tolist(), strict=True)
            if has_any_key(features[i], keys)
        ]
        for idx, dist in found
    ]


def _with_distance(feature: OSMFeature, distance_m: float) -> OSMFeature:
    # Filling __dict__ directly is ~3x faster than the frozen dataclass __init__, and a search
    # can return hundreds of thousands of features; the tags dict is copied so callers own it.
    clone = object.__new__(OSMFeature)
    clone.__dict__.update(feature.__dict__, tags=dict(feature.tags), distance_m=distance_m)
    return clone


@functools.lru_cache(maxsize=8)
def _read_features_cached(path: str, mtime_ns: int, size: int) -> tuple[OSMFeature, ...]:
    # mtime and size are part of the key so that a rewritten file is read again.
    del mtime_ns, size
    features = tuple(read_features(Path(path)))
    log.info("read %d features from %s", len(features), path)
    return features
