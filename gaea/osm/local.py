"""OpenStreetMap extracts on disk: read once, then queried through a spatial index.

``.osm`` / ``.osm.bz2`` / ``.xml`` files are read with osmnx (``features_from_xml``), ``.osm.pbf`` /
``.pbf`` files with pyosmium; both end in :func:`gaea.osm.features.feature_from_element`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from gaea.errors import BadInputError, OSMError
from gaea.osm._geometry import representative_lat_lon
from gaea.osm._spatial import PointIndex
from gaea.osm.features import (
    CATEGORY_KEYS,
    DISTINGUISHING_KEYS,
    OSMFeature,
    feature_from_element,
    has_any_key,
    validate_keys,
)
from gaea.osm.source import Bounds
from gaea.types import GeoPoint

log = logging.getLogger(__name__)

XML_SUFFIXES = (".osm", ".osm.bz2", ".xml", ".osm.xml")
PBF_SUFFIXES = (".osm.pbf", ".pbf")


class LocalOSMSource:
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
        path = _checked_path(path)
        features = _read_features_cached(str(path), *_file_identity(path))
        return cls(features, name=f"osm-file:{path.name}", bounds=_header_bounds(path))

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
        """:meth:`features` for each of `points`, answered by one batched index query."""
        check_radius(radius_m)
        wanted = validate_keys(keys)
        lats, lons = points_to_arrays(points)
        return [
            [
                _with_distance(self._features[i], d)
                for i, d in zip(idx.tolist(), dist.tolist(), strict=True)
                if has_any_key(self._features[i], wanted)
            ]
            for idx, dist in self._index.within(lats, lons, radius_m)
        ]


def open_osm_source(path: str | Path) -> LocalOSMSource:
    """Open an OSM extract, choosing the reader by suffix: osmnx for XML (``.osm``, ``.osm.bz2``,
    ``.xml``), pyosmium for PBF (``.osm.pbf``, ``.pbf``). Opening the same unchanged file again
    reuses the features already read."""
    return LocalOSMSource.from_file(path)


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


def _with_distance(feature: OSMFeature, distance_m: float) -> OSMFeature:
    # Filling __dict__ directly is ~3x faster than the frozen dataclass __init__, and a search
    # can return hundreds of thousands of features; the tags dict is copied so callers own it.
    clone = object.__new__(OSMFeature)
    clone.__dict__.update(feature.__dict__, tags=dict(feature.tags), distance_m=distance_m)
    return clone


def _checked_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"OSM extract {str(path)!r} does not exist or is not a file")
    if not path.name.lower().endswith(XML_SUFFIXES + PBF_SUFFIXES):
        raise BadInputError(
            f"OSM extract {str(path)!r} has an unsupported suffix; "
            f"expected one of {', '.join(XML_SUFFIXES + PBF_SUFFIXES)}"
        )
    return path.resolve()


def _file_identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _read_features_cached(path: str, mtime_ns: int, size: int) -> tuple[OSMFeature, ...]:
    # mtime and size are part of the key so that a rewritten file is read again.
    del mtime_ns, size
    reader = _read_pbf if path.lower().endswith(PBF_SUFFIXES) else _read_xml
    try:
        features = tuple(reader(Path(path)))
    except (OSMError, BadInputError):
        raise
    except Exception as error:
        raise OSMError(f"could not read OSM extract {path!r}: {type(error).__name__}: {error}") from error
    log.info("read %d features from %s", len(features), path)
    return features


def _header_bounds(path: Path) -> Bounds | None:
    """The box the extract's header declares (``<bounds>`` in XML, the PBF header's bbox), if any."""
    import osmium

    try:
        reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
        try:
            box = reader.header().box()
        finally:
            reader.close()
    except RuntimeError as error:
        log.info("%s: no header bounds (%s)", path, error)
        return None
    if not box.valid():
        return None
    return Bounds(box.bottom_left.lat, box.bottom_left.lon, box.top_right.lat, box.top_right.lon)


def _read_xml(path: Path) -> Iterator[OSMFeature]:
    import osmnx
    from osmnx._errors import InsufficientResponseError

    try:
        frame = osmnx.features_from_xml(path, tags={key: True for key in CATEGORY_KEYS})
    except InsufficientResponseError:
        log.warning("OSM extract %s holds no tagged features", path)
        return
    columns = [key for key in DISTINGUISHING_KEYS if key in frame.columns]
    tags_frame = frame[columns].astype(object)
    for (element, osm_id), geometry, tag_values in zip(
        frame.index, frame.geometry, tags_frame.itertuples(index=False, name=None), strict=True
    ):
        point = representative_lat_lon(geometry)
        if point is None:
            continue
        tags = {key: value for key, value in zip(columns, tag_values, strict=True) if isinstance(value, str)}
        feature = feature_from_element(element, osm_id, tags, *point)
        if feature is not None:
            yield feature


def _read_pbf(path: Path) -> Iterator[OSMFeature]:
    import osmium
    from shapely.geometry import LineString, MultiPolygon, Point, Polygon

    category_filter = osmium.filter.KeyFilter(*CATEGORY_KEYS)
    processor = (
        osmium.FileProcessor(str(path))
        .with_locations()
        .with_areas(osmium.filter.KeyFilter(*CATEGORY_KEYS))
        .with_filter(category_filter)
    )
    for obj in processor:
        tags = {tag.k: tag.v for tag in obj.tags if tag.k in DISTINGUISHING_KEYS}
        if obj.is_node():
            osm_type, osm_id, geometry = "node", obj.id, Point(obj.location.lon, obj.location.lat)
        elif obj.is_way():
            coords = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
            if len(coords) < 2:
                continue
            is_area = obj.is_closed() and len(coords) >= 4 and "highway" not in tags
            osm_type, osm_id = "way", obj.id
            geometry = Polygon(coords) if is_area else LineString(coords)
        elif obj.is_area() and not obj.from_way():
            polygons = [Polygon([(n.lon, n.lat) for n in ring]) for ring in obj.outer_rings()]
            if not polygons:
                continue
            osm_type, osm_id, geometry = "relation", obj.orig_id(), MultiPolygon(polygons)
        else:
            continue
        point = representative_lat_lon(geometry)
        feature = feature_from_element(osm_type, osm_id, tags, *point) if point else None
        if feature is not None:
            yield feature
