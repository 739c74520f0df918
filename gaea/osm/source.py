"""The protocol every OpenStreetMap source follows (local extracts and Overpass alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gaea.osm.features import OSMFeature
from gaea.types import GeoPoint


@dataclass(frozen=True)
class Bounds:
    """The area an extract covers, in decimal degrees."""

    south: float
    west: float
    north: float
    east: float

    def distance_m(self, point: GeoPoint) -> float:
        """Great-circle metres from `point` to the nearest point of the box (0 inside it)."""
        from gaea.geo.distance import haversine_km

        nearest_lat = min(max(point.lat, self.south), self.north)
        nearest_lon = min(max(point.lon, self.west), self.east)
        if (nearest_lat, nearest_lon) == (point.lat, point.lon):
            return 0.0
        return float(haversine_km(point.lat, point.lon, nearest_lat, nearest_lon)) * 1000.0

    def __str__(self) -> str:
        return f"lat {self.south:.5f} to {self.north:.5f}, lon {self.west:.5f} to {self.east:.5f}"


@runtime_checkable
class OSMSource(Protocol):
    """Finds OSM features near points.

    Attributes
    ----------
    name
        Where the data comes from, e.g. ``"osm-file:west-oakland.osm.bz2"`` or ``"overpass:https://..."``.

    A source that covers a limited area (an extract) also has ``bounds``, a `Bounds`, so that a point outside
    it is told apart from a place with nothing around it; sources without it (Overpass) cover the world.
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
