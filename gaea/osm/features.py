"""The normalized OpenStreetMap record every OSM source returns, and the one builder that makes it.

The local-file reader (pyosmium) and the Overpass client hand raw elements (type, id, tags, a point)
to the same rules (:func:`feature_from_element`, or :func:`describe_tags` then
:func:`feature_from_description`), so everything downstream sees the same records whichever source
produced them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gaea.errors import BadInputError
from gaea.osm.sanitize import sanitize_text

#: Keys that say what a feature *is*, most telling first: :attr:`OSMFeature.category` is the first
#: of these present on a feature. Specific points of interest (a cafe, a shop, a museum) beat
#: transport and landscape, which beat the land use around them and, last, the road.
CATEGORY_KEYS: tuple[str, ...] = (
    "amenity",
    "shop",
    "tourism",
    "historic",
    "leisure",
    "office",
    "craft",
    "healthcare",
    "aeroway",
    "railway",
    "public_transport",
    "sport",
    "man_made",
    "natural",
    "waterway",
    "place",
    "building",
    "landuse",
    "highway",
)

#: Keys that describe a feature further (never a category on their own).
ATTRIBUTE_KEYS: tuple[str, ...] = (
    "name",
    "name:en",
    "religion",
    "denomination",
    "cuisine",
    "artwork_type",
    "brand",
    "wikidata",
)

#: Every tag key an :class:`OSMFeature` keeps; all other tags (addresses, sources, notes) are dropped.
DISTINGUISHING_KEYS: tuple[str, ...] = CATEGORY_KEYS + ATTRIBUTE_KEYS

#: Building types telling enough to count without a name; ``building=yes``/``house``/... do not.
SPECIAL_BUILDINGS: frozenset[str] = frozenset(
    """
    cathedral chapel church monastery mosque shrine synagogue temple religious
    castle palace fort tower bunker lighthouse windmill
    train_station transportation stadium grandstand sports_hall
    government civic public townhall hospital school university college kindergarten
    museum hotel fire_station bridge
    """.split()
)

#: Unnamed elements whose only category is one of these are street furniture, not places.
NOISE_VALUES: Mapping[str, frozenset[str]] = {
    "highway": frozenset(
        """
        crossing turning_circle turning_loop give_way stop street_lamp passing_place mini_roundabout
        traffic_signals milestone speed_camera elevator traffic_mirror
        """.split()
    ),
    "railway": frozenset("switch level_crossing crossing buffer_stop signal railway_crossing milestone".split()),
    "natural": frozenset("tree tree_row shrub".split()),
    "man_made": frozenset("survey_point manhole utility_pole street_cabinet".split()),
}

_TAG_MAX_LEN = 120


@dataclass(frozen=True)
class OSMFeature:
    """One OpenStreetMap element worth mentioning, near a query point.

    Attributes
    ----------
    osm_type
        ``"node"``, ``"way"`` or ``"relation"``.
    osm_id
        The element id (unique within its type).
    name
        Sanitized ``name`` (or ``name:en`` when there is no ``name``); ``""`` when unnamed.
    tags
        Sanitized tags whose keys are in :data:`DISTINGUISHING_KEYS`.
    lat, lon
        The point used for distances: a node's position, a way's or relation's representative point.
    distance_m
        Great-circle distance from the query point, set by ``features()`` / ``features_many()``.
    """

    osm_type: str
    osm_id: int
    name: str
    tags: dict[str, str] = field(hash=False)
    lat: float
    lon: float
    distance_m: float = 0.0

    @property
    def category(self) -> tuple[str, str] | None:
        """The most telling ``(key, value)``, by the order of :data:`CATEGORY_KEYS`; None when there is none."""
        for key in CATEGORY_KEYS:
            if key in self.tags:
                return key, self.tags[key]
        return None

    def evidence(self) -> dict:
        """A JSON-ready dict of the feature, for QA records and answers that cite OSM."""
        return {
            "osm_type": self.osm_type,
            "osm_id": self.osm_id,
            "name": self.name,
            "tags": dict(self.tags),
            "lat": round(self.lat, 7),
            "lon": round(self.lon, 7),
            "distance_m": round(self.distance_m, 1),
        }


def feature_from_element(
    osm_type: str, osm_id: int, tags: Mapping[str, object], lat: float, lon: float
) -> OSMFeature | None:
    """Build the normalized feature of one raw OSM element, or None when it is not worth mentioning.

    Only :data:`DISTINGUISHING_KEYS` are kept, with sanitized values. An element is kept when at
    least one category tag survives: a building only counts when it is named or special
    (:data:`SPECIAL_BUILDINGS`), street furniture (:data:`NOISE_VALUES`) only when named, and a
    value ``"no"`` never. Elements with no usable point are dropped too.

    Parameters
    ----------
    osm_type, osm_id
        The element's identity.
    tags
        Its raw tags (values of any type; missing values such as NaN are ignored).
    lat, lon
        Its representative point in WGS84 degrees.
    """
    if not _is_valid_point(lat, lon):
        return None
    return feature_from_description(osm_type, osm_id, describe_tags(tags), lat, lon)


def describe_tags(tags: Mapping[str, object]) -> tuple[str, dict[str, str]] | None:
    """The name and kept tags of an element worth mentioning (the rules of :func:`feature_from_element`),
    or None; readers ask this first, so that they work out no geometry for an element that is not kept."""
    kept = _distinguishing_tags(tags)
    name = kept.get("name") or kept.get("name:en", "")
    for key in list(kept):
        if key in CATEGORY_KEYS and not _counts_as_category(key, kept[key], named=bool(name)):
            del kept[key]
    if not any(key in CATEGORY_KEYS for key in kept):
        return None
    return name, kept


def feature_from_description(
    osm_type: str, osm_id: int, description: tuple[str, dict[str, str]] | None, lat: float, lon: float
) -> OSMFeature | None:
    """The feature of an element described by :func:`describe_tags`, or None without a description or a
    usable point."""
    if description is None or not _is_valid_point(lat, lon):
        return None
    name, kept = description
    return OSMFeature(osm_type=osm_type, osm_id=int(osm_id), name=name, tags=kept, lat=float(lat), lon=float(lon))


def validate_keys(keys: Iterable[str] | None) -> frozenset[str] | None:
    """The `keys` filter of ``features()`` as a set, after checking each key is one a feature can carry."""
    if keys is None:
        return None
    if isinstance(keys, str):
        keys = [keys]
    wanted = frozenset(keys)
    unknown = sorted(wanted - set(DISTINGUISHING_KEYS))
    if unknown:
        raise BadInputError(
            f"OSM keys {unknown} are not kept on features; "
            f"choose among DISTINGUISHING_KEYS: {', '.join(DISTINGUISHING_KEYS)}"
        )
    if not wanted:
        raise BadInputError("OSM keys filter is empty; pass None for every key")
    return wanted


def has_any_key(feature: OSMFeature, keys: frozenset[str] | None) -> bool:
    """Whether `feature` passes the `keys` filter (None lets everything through)."""
    return keys is None or not keys.isdisjoint(feature.tags)


_KEY_RANK = {key: rank for rank, key in enumerate(DISTINGUISHING_KEYS)}


def _distinguishing_tags(tags: Mapping[str, object]) -> dict[str, str]:
    kept: dict[str, str] = {}
    # In DISTINGUISHING_KEYS order; going through the element's few tags is cheaper than through every key.
    for key in sorted(_KEY_RANK.keys() & tags.keys(), key=_KEY_RANK.__getitem__):
        raw = tags[key]
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            continue
        value = sanitize_text(raw, max_len=_TAG_MAX_LEN)
        if value:
            kept[key] = value
    return kept


def _counts_as_category(key: str, value: str, *, named: bool) -> bool:
    if value == "no":
        return False
    if key == "building":
        return named or value in SPECIAL_BUILDINGS
    return named or value not in NOISE_VALUES.get(key, ())


def _is_valid_point(lat: float, lon: float) -> bool:
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return False
    return math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
