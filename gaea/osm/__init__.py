"""OpenStreetMap sources: local extracts (in memory, or an on-disk feature store) and the Overpass API, one
record type.

Names load lazily, so ``from gaea.osm import sanitize_text`` does not pull in httpx, scipy or pyosmium.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gaea.osm.features import CATEGORY_KEYS, DISTINGUISHING_KEYS, OSMFeature, feature_from_element
    from gaea.osm.local import LocalOSMSource
    from gaea.osm.overpass import OverpassSource
    from gaea.osm.sanitize import sanitize_text
    from gaea.osm.source import OSMSource
    from gaea.osm.store import FeatureStore, build_store, open_osm_source

_HOMES = {
    "CATEGORY_KEYS": "gaea.osm.features",
    "DISTINGUISHING_KEYS": "gaea.osm.features",
    "OSMFeature": "gaea.osm.features",
    "feature_from_element": "gaea.osm.features",
    "LocalOSMSource": "gaea.osm.local",
    "open_osm_source": "gaea.osm.store",
    "FeatureStore": "gaea.osm.store",
    "build_store": "gaea.osm.store",
    "OverpassSource": "gaea.osm.overpass",
    "sanitize_text": "gaea.osm.sanitize",
    "OSMSource": "gaea.osm.source",
}

__all__ = [
    "CATEGORY_KEYS",
    "DISTINGUISHING_KEYS",
    "FeatureStore",
    "LocalOSMSource",
    "OSMFeature",
    "OSMSource",
    "OverpassSource",
    "build_store",
    "feature_from_element",
    "open_osm_source",
    "sanitize_text",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'gaea.osm' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
