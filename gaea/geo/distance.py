"""Distances on the sphere and the distance metrics of the geolocation literature."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from gaea.errors import BadInputError
from gaea.types import GeoPoint

#: Mean Earth radius (IUGG), the radius every haversine here uses.
EARTH_RADIUS_KM = 6371.0088

#: Distance thresholds of the geolocation literature: street, city, region, country, continent.
THRESHOLDS_KM: tuple[float, ...] = (1, 25, 200, 750, 2500)

#: GeoGuessr's scale: a guess `d` km away scores 5000 * exp(-d / 1492.7).
GEOSCORE_MAX = 5000.0
GEOSCORE_SCALE_KM = 1492.7


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> float | np.ndarray:
    """Great-circle distance in km on a sphere of the mean Earth radius (6371.0088 km).

    Inputs broadcast against each other like numpy arrays. Within 0.56% of the WGS84 ellipsoid distance
    everywhere (the worst case is a short north-south path at the equator). NaN in, NaN out.

    Parameters
    ----------
    lat1, lon1, lat2, lon2 : float or array-like
        Decimal degrees.

    Returns
    -------
    float when every input is a scalar, else an ndarray of the broadcast shape.
    """
    arrays = [np.asarray(value, dtype=np.float64) for value in (lat1, lon1, lat2, lon2)]
    phi1, lam1, phi2, lam2 = (np.radians(value) for value in arrays)
    half_chord = np.sin((phi2 - phi1) / 2.0) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2.0) ** 2
    distance = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(half_chord, 0.0, 1.0)))
    return float(distance) if distance.ndim == 0 else distance


def _distances(distances_km: ArrayLike) -> np.ndarray:
    """Distances as a 1-D float array, None -> NaN; negative values and an empty input are errors."""
    try:
        values = np.asarray(distances_km, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise BadInputError(f"distances must be numbers (None or NaN for a missing prediction): {error}") from error
    if values.size == 0:
        raise BadInputError("no distances given: a metric over zero predictions is undefined")
    if np.any(values < 0):
        raise BadInputError(f"distances must be >= 0 km, got {values[values < 0][:3].tolist()}")
    return values


def threshold_key(threshold_km: float) -> str:
    """The result key for a threshold: 1 -> "1km", 0.5 -> "0.5km"."""
    return f"{threshold_km:g}km"


def accuracy_at(distances_km: ArrayLike, thresholds: tuple[float, ...] = THRESHOLDS_KM) -> dict[str, float]:
    """Percentage of predictions within each distance threshold.

    A missing prediction (NaN or None) counts as a miss at every threshold.

    Parameters
    ----------
    distances_km : array-like of float
        One error distance per item.
    thresholds : tuple of float
        Thresholds in km.

    Returns
    -------
    dict
        ``{"1km": 12.5, "25km": 40.0, ...}``, percentages in [0, 100].
    """
    values = _distances(distances_km)
    # NaN <= t is False, so missing predictions are misses without a special case.
    return {threshold_key(t): float(100.0 * np.mean(values <= t)) for t in thresholds}


def median_error_km(distances_km: ArrayLike) -> float:
    """Median error distance, a missing prediction (NaN or None) counting as an infinitely large error.

    So a model cannot lower its median by abstaining: when half or more of the items are missing,
    the median is ``inf``.
    """
    values = _distances(distances_km)
    return float(np.median(np.where(np.isnan(values), np.inf, values)))


def geoscore(distance_km: ArrayLike) -> float | np.ndarray:
    """GeoGuessr-style score, 5000 * exp(-d / 1492.7): 5000 at 0 km, about 1839 at 1492.7 km; NaN -> 0.

    Returns a float for a scalar input, else an ndarray.
    """
    values = np.asarray(distance_km, dtype=np.float64)
    scores = np.where(np.isnan(values), 0.0, GEOSCORE_MAX * np.exp(-np.nan_to_num(values) / GEOSCORE_SCALE_KM))
    return float(scores) if scores.ndim == 0 else scores


def distance_summary(distances_km: ArrayLike) -> dict[str, Any]:
    """The distance metrics of `gaea eval geo` over error distances (NaN or None: a missing prediction).

    Returns
    -------
    dict
        ``accuracy`` (percent within each of THRESHOLDS_KM, keyed "1km", ...), ``median_km`` (None when half
        or more predictions are missing) and ``geoscore`` (the mean, a missing prediction scoring 0).
    """
    values = _distances(distances_km)
    median = median_error_km(values)
    return {
        "accuracy": accuracy_at(values),
        "median_km": median if np.isfinite(median) else None,
        "geoscore": float(np.mean(geoscore(values))),
    }


def hemispheres(lat: float, lon: float) -> tuple[Literal["N", "S"], Literal["E", "W"]]:
    """("N" or "S", "E" or "W") for a point; the equator counts as north and the prime meridian as east."""
    point = _checked_point(lat, lon)
    return ("N" if point.lat >= 0 else "S"), ("E" if point.lon >= 0 else "W")


def _checked_point(lat: float, lon: float) -> GeoPoint:
    try:
        return GeoPoint(float(lat), float(lon))
    except (TypeError, ValueError) as error:
        raise BadInputError(f"({lat!r}, {lon!r}) is not a valid latitude/longitude: {error}") from error


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance between two points in km."""
    return float(haversine_km(a.lat, a.lon, b.lat, b.lon))


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere: straight-line nearest neighbours there are great-circle nearest ones."""
    lat_r, lon_r = np.radians(lat), np.radians(lon)
    cos_lat = np.cos(lat_r)
    return np.column_stack([cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)])


def chord_to_km(chord: np.ndarray) -> np.ndarray:
    """Great-circle distance in km for a straight-line distance between two unit vectors."""
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
