"""The one point that stands for a way or relation when measuring distances."""

from __future__ import annotations

from shapely.geometry.base import BaseGeometry


def representative_lat_lon(geometry: BaseGeometry | None) -> tuple[float, float] | None:
    """(lat, lon) standing for `geometry`, or None when it is missing or empty.

    Points are themselves. Areas use their centroid when it falls inside them, otherwise a
    point guaranteed inside (an L-shaped or ring-shaped area's centroid can lie outside).
    Lines (roads, rivers) use the point halfway along them, which lies on the line, unlike
    their centroid. Planar maths in degrees is accurate enough at the size of one feature.
    """
    if geometry is None or geometry.is_empty:
        return None
    if geometry.geom_type == "Point":
        return geometry.y, geometry.x
    if geometry.geom_type in ("LineString", "MultiLineString", "LinearRing"):
        lines = getattr(geometry, "geoms", [geometry])
        longest = max(lines, key=lambda line: line.length)
        point = longest.interpolate(0.5, normalized=True)
        return point.y, point.x
    centroid = geometry.centroid
    if geometry.geom_type in ("Polygon", "MultiPolygon") and not geometry.contains(centroid):
        centroid = geometry.representative_point()
    return centroid.y, centroid.x
