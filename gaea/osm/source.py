"""The protocol every OpenStreetMap source follows (local extracts and Overpass alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from gaea.osm.features import OSMFeature
from gaea.types import GeoPoint


@runtime_checkable
class OSMSource(Protocol):
    """Finds OSM features near points.

    Attributes
    ----------
    name
        Where the data comes from, e.g. ``"osm-file:west-oakland.osm.bz2"`` or ``"overpass:https://..."``.
    """

    name: str

    def features(
        self, point: GeoPoint, radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[OSMFeature]:
        """Features within `radius_m` of `point`, nearest first, ``distance_m`` set."""
        ...

    def features_many(
        self, points: Sequence[GeoPoint], radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[list[OSMFeature]]:
        """``features`` for each point, batched (one index query, or one Overpass request per tile)."""
        ...
