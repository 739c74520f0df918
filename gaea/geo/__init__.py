"""Geography, offline: distances and metrics, countries and (reverse) geocoding, and reading locations out
of model answers.

- `gaea.geo.distance`: haversine, accuracy at thresholds, median error, GeoScore.
- `gaea.geo.places`: country facts, driving side, `geocode`, `reverse_geocode_many`, name normalisation.
- `gaea.geo.answers`: `parse_location` / `parse_place` / `parse_coordinates` for free model text.
"""

from gaea.geo._gazetteer import gazetteer, name_key
from gaea.geo.answers import ParsedLocation, parse_coordinates, parse_location, parse_place
from gaea.geo.distance import (
    EARTH_RADIUS_KM,
    GEOSCORE_MAX,
    GEOSCORE_SCALE_KM,
    THRESHOLDS_KM,
    accuracy_at,
    chord_to_km,
    distance_km,
    distance_summary,
    geoscore,
    haversine_km,
    hemispheres,
    median_error_km,
    threshold_key,
    unit_vectors,
)
from gaea.geo.places import (
    CountryInfo,
    GeoPlace,
    country_info,
    driving_side,
    geocode,
    normalize_city,
    normalize_country,
    reverse_geocode,
    reverse_geocode_many,
)

__all__ = [
    "EARTH_RADIUS_KM",
    "GEOSCORE_MAX",
    "GEOSCORE_SCALE_KM",
    "THRESHOLDS_KM",
    "CountryInfo",
    "GeoPlace",
    "ParsedLocation",
    "accuracy_at",
    "chord_to_km",
    "country_info",
    "distance_km",
    "distance_summary",
    "driving_side",
    "gazetteer",
    "geocode",
    "geoscore",
    "haversine_km",
    "hemispheres",
    "median_error_km",
    "name_key",
    "normalize_city",
    "normalize_country",
    "parse_coordinates",
    "parse_location",
    "parse_place",
    "reverse_geocode",
    "reverse_geocode_many",
    "threshold_key",
    "unit_vectors",
]
