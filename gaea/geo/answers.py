"""Reading a location out of free model text: JSON objects, coordinates in every common notation, and
"City, Country" answers."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from gaea.geo._gazetteer import gazetteer, name_key
from gaea.geo.places import GeoPlace, _city_rows, _country_fields, _in_country, geocode, normalize_country
from gaea.types import GeoPoint

Axis = str  # "lat" or "lon"

# ---------------------------------------------------------------------------------------------------------
# Text clean-up: typographic variants of the symbols the patterns below look for.

_TYPOGRAPHY = str.maketrans(
    {"′": "'", "’": "'", "‘": "'", "´": "'", "″": '"', "“": '"', "”": '"', "º": "°", "˚": "°", "−": "-", "*": " "}
)


def clean_text(text: str) -> str:
    """The text with typographic primes, quotes, minus signs and markdown asterisks made plain ASCII."""
    return text.translate(_TYPOGRAPHY).replace("''", '"')


# ---------------------------------------------------------------------------------------------------------
# One coordinate: signed decimal, or degrees with minutes and seconds, with or without a hemisphere.

_HEMI = r"(?:[NSEW](?![A-Za-z])|(?i:north|south|east|west)\b)"
_ANGLE = (
    r"(?P<sign>[-+])?(?P<deg>\d{1,3}(?:\.\d+)?)(?!\d)\s*(?:°|(?i:degrees|degree|deg)\b)?"
    r"(?:\s*(?P<min>\d{1,2}(?:\.\d+)?)\s*'(?:\s*(?P<sec>\d{1,2}(?:\.\d+)?)\s*\")?)?"
)
# A value after a label ("lat: 43.4", "Latitude 43°28'N", "latitude = N 43.4").
_VALUE = re.compile(rf"(?:(?P<pre>{_HEMI})\s*)?{_ANGLE}(?:\s*(?P<post>{_HEMI}))?")
# A coordinate that names its hemisphere, after ("43.4674N", "43°28'02.8\"N") or before ("N 43.4674").
_MARKED = re.compile(
    rf"(?<![\w.]){_ANGLE}\s*(?P<post>{_HEMI})|(?<![\w.])(?P<pre>[NSEW])\s*(?P<sign2>)(?P<deg2>\d{{1,3}}(?:\.\d+)?)"
    rf"(?!\d)\s*(?:°|(?i:degrees|deg)\b)?(?:\s*(?P<min2>\d{{1,2}}(?:\.\d+)?)\s*'"
    rf"(?:\s*(?P<sec2>\d{{1,2}}(?:\.\d+)?)\s*\")?)?"
)
_HEMI_AXIS = {"n": ("lat", 1.0), "s": ("lat", -1.0), "e": ("lon", 1.0), "w": ("lon", -1.0)}
_LIMIT = {"lat": 90.0, "lon": 180.0}


def _angle(groups: dict[str, str | None], suffix: str = "") -> float | None:
    """Decimal degrees (unsigned) from degree/minute/second groups; None when minutes or seconds are >= 60."""
    degrees = float(groups[f"deg{suffix}"])  # type: ignore[arg-type]
    minutes = float(groups[f"min{suffix}"] or 0.0)
    seconds = float(groups[f"sec{suffix}"] or 0.0)
    if minutes >= 60.0 or seconds >= 60.0:
        return None
    return degrees + minutes / 60.0 + seconds / 3600.0


def _hemisphere(word: str | None) -> tuple[Axis, float] | None:
    return _HEMI_AXIS[word[0].lower()] if word else None


def _signed(value: float, sign: str | None, hemisphere: tuple[Axis, float] | None) -> float:
    # "-0.37° S" means south once, not north: the hemisphere decides when both are given.
    if hemisphere is not None:
        return math.copysign(value, hemisphere[1])
    return -value if sign == "-" else value


def _in_range(value: float, axis: Axis) -> bool:
    return math.isfinite(value) and abs(value) <= _LIMIT[axis]


def _point(lat: float | None, lon: float | None) -> GeoPoint | None:
    if lat is None or lon is None or not (_in_range(lat, "lat") and _in_range(lon, "lon")):
        return None
    return GeoPoint(float(lat), float(lon))


def parse_value(text: str, axis: Axis) -> float | None:
    """One latitude or longitude written alone ("43.4674", "-0.37", "43°28'02.8\"N", "11.885 E").

    Returns None when the text is not one coordinate, names the other axis's hemisphere, or is out of range.
    """
    match = _VALUE.fullmatch(clean_text(text).strip())
    if match is None:
        return None
    hemisphere = _hemisphere(match["pre"] or match["post"])
    if hemisphere is not None and hemisphere[0] != axis:
        return None
    value = _angle(match.groupdict())
    if value is None:
        return None
    value = _signed(value, match["sign"], hemisphere)
    return value if _in_range(value, axis) else None


# ---------------------------------------------------------------------------------------------------------
# JSON objects inside model text (fenced, inline, or Python-style dicts with single quotes).

_FENCE = re.compile(r"```[A-Za-z]*\s*(.*?)```", re.DOTALL)
_LAT_KEYS = ("latitude", "lat")
_LON_KEYS = ("longitude", "lon", "lng", "long")
_PAIR_KEYS = ("coordinates", "coords", "coordinate", "location", "gps", "position", "latlon", "lat_lon", "latlng")
_GEOJSON_KEYS = ("geometry", "geojson")


def _balanced_spans(text: str) -> Iterator[str]:
    """Every top-level {...} substring, matching braces outside string literals."""
    depth, start, quote, escaped = 0, -1, "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'" and depth:
            quote = char
        elif char == "{":
            depth, start = depth + 1, index if depth == 0 else start
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start : index + 1]


def _load_object(snippet: str) -> Any:
    try:
        return json.loads(snippet)
    except (ValueError, RecursionError):
        pass
    try:
        # Models often print Python dicts ({'lat': 43.4}); literal_eval evaluates literals only, never code.
        return ast.literal_eval(snippet)
    except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError):
        return None


def json_objects(text: str) -> list[Any]:
    """The JSON values found in `text`: fenced blocks first, then inline objects, in order of appearance."""
    found = []
    for block in _FENCE.findall(text):
        value = _load_object(block.strip())
        if isinstance(value, (dict, list)):
            found.append(value)
    for snippet in _balanced_spans(text):
        value = _load_object(snippet)
        if isinstance(value, dict) and value not in found:
            found.append(value)
    return found


def _json_number(value: Any, axis: Axis) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if _in_range(float(value), axis) else None
    if isinstance(value, str):
        return parse_value(value, axis)
    return None


def _pair_from_list(value: Any, *, geojson: bool) -> GeoPoint | None:
    if not (isinstance(value, (list, tuple)) and len(value) in (2, 3)):
        return None
    first, second = (
        _json_number(value[0], "lon" if geojson else "lat"),
        _json_number(value[1], "lat" if geojson else "lon"),
    )
    return _point(second, first) if geojson else _point(first, second)


def _lookup(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(key).strip().lower(): value for key, value in mapping.items()}
    return next((lowered[key] for key in keys if key in lowered), None)


def point_from_json(value: Any, *, geojson: bool = False) -> GeoPoint | None:
    """The first point in a decoded JSON value: lat/lon keys, GeoJSON geometries, or coordinate pairs."""
    if isinstance(value, list):
        return next(filter(None, (point_from_json(item, geojson=geojson) for item in value)), None)
    if not isinstance(value, dict):
        return None
    lat, lon = _lookup(value, _LAT_KEYS), _lookup(value, _LON_KEYS)
    if lat is not None and lon is not None:
        return _point(_json_number(lat, "lat"), _json_number(lon, "lon"))
    is_geojson = geojson or str(_lookup(value, ("type",)) or "").lower() in ("point", "multipoint")
    pair = _lookup(value, _PAIR_KEYS)
    point = _pair_from_list(pair, geojson=is_geojson)
    if point is None and isinstance(pair, str):
        point = coordinates_in_text(pair)
    if point is not None:
        return point
    for key, nested in value.items():
        point = point_from_json(nested, geojson=is_geojson or str(key).lower() in _GEOJSON_KEYS)
        if point is not None:
            return point
    return None


# ---------------------------------------------------------------------------------------------------------
# Coordinates in prose.

_LABEL = re.compile(r"(?i)\b(?P<axis>lat(?:itude)?|lon(?:gitude)?|lng|long)\b\s*(?:\([^)]{0,12}\))?\s*[:=]?\s*")
_BOTH_LABELS = re.compile(
    r"(?i)\b(?P<first>lat|lon|lng|long)(?:gitude|itude)?\s*[/,&]\s*(?:lat|lon|lng|long)(?:gitude|itude)?\b"
    r"\s*\)?\s*[:=]?\s*[(\[]?\s*(?P<a>[-+]?\d{1,3}(?:\.\d+)?)\s*°?\s*[,;/ ]\s*(?P<b>[-+]?\d{1,3}(?:\.\d+)?)"
)
_BARE_PAIR = re.compile(
    r"(?<![\w.])(?P<a>[-+]?\d{1,3}\.(?P<fa>\d+))\s*°?\s*(?P<sep>[,;]|\s)\s*(?P<b>[-+]?\d{1,3}\.(?P<fb>\d+))\s*°?"
    r"(?!\.?\d|\w|\s*(?i:km|kilomet|mi\b|miles|meters|metres|m\b|%|percent))"
)
_MARKED_GAP = re.compile(r"(?i)^[\s,;/|()\[\]]*(?:and\s+)?(?:(?:lat(?:itude)?|lon(?:gitude)?|lng|long)\s*[:=]?\s*)?$")
_FINAL = re.compile(r"(?i)final\s+(?:answer|guess|prediction)|\bin\s+conclusion\b")


def _marked_components(text: str) -> Iterator[tuple[int, int, Axis, float]]:
    for match in _MARKED.finditer(text):
        groups = match.groupdict()
        suffix = "" if groups["deg"] is not None else "2"
        hemisphere = _hemisphere(groups["post"] or groups["pre"])
        value = _angle(groups, suffix)
        if hemisphere is None or value is None:
            continue
        value = _signed(value, groups[f"sign{suffix}"] or None, hemisphere)
        if _in_range(value, hemisphere[0]):
            yield match.start(), match.end(), hemisphere[0], value


def _marked_pair(text: str) -> GeoPoint | None:
    """A latitude and a longitude that name their hemispheres, next to each other, in either order."""
    components = list(_marked_components(text))
    for (_, end, axis, value), (start, _, next_axis, next_value) in pairwise(components):
        if axis != next_axis and _MARKED_GAP.match(text[end:start]):
            return _point(value, next_value) if axis == "lat" else _point(next_value, value)
    return None


def _labelled_pair(text: str) -> GeoPoint | None:
    """ "lat: 43.4 lon: 11.8", "Latitude: -0.37, Longitude: 36.05", "latitude = N 43.4", in either order."""
    found: dict[Axis, float] = {}
    for label in _LABEL.finditer(text):
        axis = "lat" if label["axis"].lower().startswith("lat") else "lon"
        value = _VALUE.match(text, label.end())
        if axis in found or value is None:
            continue
        parsed = parse_value(value.group(0), axis)
        if parsed is not None:
            found[axis] = parsed
    return _point(found.get("lat"), found.get("lon"))


def _header_pair(text: str) -> GeoPoint | None:
    """ "lat/lon: 43.4, 11.8" or "(lon, lat) = (11.8, 43.4)": the header says which number is which."""
    match = _BOTH_LABELS.search(text)
    if match is None:
        return None
    a, b = float(match["a"]), float(match["b"])
    return _point(b, a) if match["first"].lower() != "lat" else _point(a, b)


def _bare_pair(text: str) -> GeoPoint | None:
    """ "43.467, 11.885" or "(-0.3713, 36.0564)": two decimals, latitude first (the order people write).

    Both numbers need a decimal part, which keeps years and counts out; numbers followed by a unit are
    distances, not coordinates. Pairs with one decimal place ("4.5, 3.8") are common in prose that is not
    about places, so they count only in brackets or after a word such as "coordinates"; pairs separated
    by a space alone need 3+ decimals.
    """
    for match in _BARE_PAIR.finditer(text):
        decimals = min(len(match["fa"]), len(match["fb"]))
        if match["sep"].isspace():
            plausible = decimals >= 3
        else:
            plausible = (
                decimals >= 2 or _bracketed(text, match.start(), match.end()) or _after_keyword(text, match.start())
            )
        point = _point(float(match["a"]), float(match["b"])) if plausible else None
        if point is not None:
            return point
    return None


_COORDINATE_WORD = re.compile(r"(?i)(?:coord|gps|location|position|\blat|\blon|\bpoint)[^\d]{0,20}$")


def _bracketed(text: str, start: int, end: int) -> bool:
    return text[:start].rstrip()[-1:] in ("(", "[") and text[end:].lstrip()[:1] in (")", "]")


def _after_keyword(text: str, start: int) -> bool:
    return _COORDINATE_WORD.search(text, max(0, start - 40), start) is not None


_PROSE_PARSERS: tuple[Callable[[str], GeoPoint | None], ...] = (_header_pair, _labelled_pair, _marked_pair, _bare_pair)


def coordinates_in_text(text: str) -> GeoPoint | None:
    """Coordinates written in prose (no JSON), looking after a "final answer" marker first."""
    cleaned = clean_text(text)
    finals = list(_FINAL.finditer(cleaned))
    segments = ([cleaned[finals[-1].end() :]] if finals else []) + [cleaned]
    for segment in segments:
        for parser in _PROSE_PARSERS:
            point = parser(segment)
            if point is not None:
                return point
    return None


def point_in_json(text: str) -> GeoPoint | None:
    return next(filter(None, map(point_from_json, json_objects(text))), None)


def parse_coordinates(text: str) -> GeoPoint | None:
    """The coordinates a model answer gives, or None.

    Tries JSON objects first (``{"latitude": 43.4, "longitude": 11.8}``, GeoJSON points, ``lat``/``lon``/
    ``lng`` keys, numbers as strings), then prose: ``lat/lon:`` headers, labelled values
    (``lat: 43.4 lon: 11.8``), hemisphere-marked values in decimal degrees, degrees-decimal-minutes or
    degrees-minutes-seconds (``43°28'02.8"N 11°53'06.5"E``, ``0.3713° S, 36.0564° E``), and finally bare
    signed decimal pairs (``(43.467, 11.885)``). Values out of range, years and plain integers are not
    coordinates. When the text has a "final answer" marker, what follows it is read first.

    Parameters
    ----------
    text : str
        Free text from a model.

    Returns
    -------
    GeoPoint or None
    """
    if not isinstance(text, str) or not text.strip():
        return None
    return point_in_json(text) or coordinates_in_text(text)


# ---------------------------------------------------------------------------------------------------------
# "City, Country" answers.

_CITY_KEYS = ("city", "town", "village", "locality", "municipality", "place")
_COUNTRY_KEYS = ("country", "country_name", "countryname", "nation")
_LABELLED_FIELD = re.compile(r"(?im)\b(?P<key>city|town|country)\b\s*(?:name)?\s*[:=]\s*(?P<value>[^\n,;|]+)")
# Sentence ends: ". " except after the abbreviations of place names (St. Louis, Mt. Fuji, Ft. Worth).
_SENTENCE_BREAK = re.compile(r"(?<!\bSt)(?<!\bMt)(?<!\bFt)(?<!\bSte)[.!?]+(?:\s|$)|[\n;:()\[\]\"!?]")
_CONNECTORS = frozenset(
    "de del della delle di da do dos das du la le les los las el al an der den dem am im upon on sur en y e "
    "und of the sous au aux-".split()
)
_NOT_CITY = frozenset(
    "it it's its this that these the i i'm i'd my me we our photo image picture location answer guess "
    "probably likely maybe perhaps definitely certainly somewhere near in at from taken shows is looks "
    "seems like yes no city town capital".split()
)


def _strip_value(value: str) -> str:
    return value.strip().strip("\"'`.,;:!?()[]{}<> \t").strip()


def place_from_json(
    value: Any, *, country_of: Callable[[str], str | None], is_city: Callable[[str, str], bool]
) -> tuple[str, str] | None:
    """(city, country) from the first object with a city or a country key (either may be ""), or from a
    "location" string such as "Arezzo, Italy"."""
    if isinstance(value, list):
        found = (place_from_json(item, country_of=country_of, is_city=is_city) for item in value)
        return next(filter(None, found), None)
    if not isinstance(value, dict):
        return None
    city, country = _lookup(value, _CITY_KEYS), _lookup(value, _COUNTRY_KEYS)
    if isinstance(city, str) or isinstance(country, str):
        city = _strip_value(city) if isinstance(city, str) else ""
        country = _strip_value(country) if isinstance(country, str) else ""
        if city or country:
            return city, country
    location = _lookup(value, ("location", "place_name", "address", "answer"))
    if isinstance(location, str):
        found = place_in_text(location, country_of=country_of, is_city=is_city)
        if found:
            return found
    nested = (place_from_json(item, country_of=country_of, is_city=is_city) for item in value.values())
    return next(filter(None, nested), None)


def labelled_place(text: str) -> tuple[str, str] | None:
    fields: dict[str, str] = {}
    for match in _LABELLED_FIELD.finditer(text):
        key = "country" if match["key"].lower() == "country" else "city"
        value = _strip_value(match["value"])
        if value and key not in fields:
            fields[key] = value
    return (fields.get("city", ""), fields.get("country", "")) if fields else None


def _country_prefix(part: str, country_of: Callable[[str], str | None]) -> str | None:
    """The country a comma-separated part starts with ("Italy." -> "Italy", "United States of America"),
    as `country_of` reports it."""
    words = part.split()
    for length in range(min(len(words), 6), 0, -1):
        candidate = _strip_value(" ".join(words[:length]))
        is_code = candidate.isalpha() and len(candidate) <= 3
        # A two- or three-letter code counts only in capitals ("Arezzo, IT"), never "it"/"us" in prose.
        country = country_of(candidate) if candidate and (not is_code or candidate.isupper()) else None
        if country:
            return country
    return None


def _name_tail(part: str) -> list[str]:
    """The capitalised words that end a phrase ("I think it is Kirchberg an der Iller" -> its last 4)."""
    tail: list[str] = []
    for word in reversed(part.split()):
        bare = word.strip("\"'`,")
        if bare and (bare[0].isupper() or (bare.lower() in _CONNECTORS and tail)):
            tail.insert(0, bare)
        else:
            break
    while tail and tail[0] in _CONNECTORS:
        tail.pop(0)
    return tail


def _choose_city(words: list[str], country: str, is_city: Callable[[str, str], bool]) -> str:
    """The longest known city among the word suffixes, else the words without leading filler words."""
    for start in range(len(words)):
        candidate = " ".join(words[start:])
        if is_city(candidate, country):
            return candidate
    while words and words[0].lower() in _NOT_CITY:
        words = words[1:]
    return " ".join(words)


def _is_name_like(part: str) -> bool:
    words = part.split()
    return 0 < len(words) <= 4 and all(word[0].isupper() or word.lower() in _CONNECTORS for word in words)


def place_in_text(
    text: str,
    *,
    country_of: Callable[[str], str | None],
    is_city: Callable[[str, str], bool],
) -> tuple[str, str] | None:
    """ "…City[, Region], Country…" in prose.

    `country_of` says whether the words after a comma name a country (or a region of one country) and
    returns the country name to report; `is_city` helps cut a city name out of the words before it.
    """
    for sentence in _SENTENCE_BREAK.split(text):
        parts = sentence.split(",")
        for index in range(1, len(parts)):
            country = _country_prefix(parts[index], country_of)
            if country is None:
                continue
            first = index - 1
            while first > 0 and _is_name_like(parts[first]) and _name_tail(parts[first - 1]):
                first -= 1
            words = _name_tail(parts[first])
            if words:
                return _choose_city(words, country, is_city), country
    return None


_IN_COUNTRY = re.compile(r"(?:\bin|\bcountry is)\s+((?:the\s+)?[A-Z][\w'.-]*(?:\s+(?:and|of|the|[A-Z][\w'.-]*)){0,4})")


def country_in_text(text: str, *, is_country: Callable[[str], bool]) -> str | None:
    """ "…in Kenya." -> "Kenya": a capitalised country name after "in"."""
    for match in _IN_COUNTRY.finditer(text):
        country = _country_prefix(match[1], lambda words: words if is_country(words) else None)
        if country is not None:
            return country
    return None


# ---------------------------------------------------------------------------------------------------------
# The public readers


def _is_country(text: str) -> bool:
    return normalize_country(text) is not None


def _country_of(text: str) -> str | None:
    """`text` itself when it names a country; the country's name when it names a region of just one
    country ("California" -> "United States"); else None."""
    if _is_country(text):
        return text
    key = name_key(text)
    codes = {code for code, _ in gazetteer().region_keys.get(key, ())} if len(key) >= 4 else set()
    return _country_fields(codes.pop())[0] if len(codes) == 1 else None


def _is_city(city: str, country: str) -> bool:
    code = normalize_country(country)
    matches = _city_rows(city)
    return bool(_in_country(matches, code) if code else matches)


# Coordinates in brackets interrupt "Sydney (-33.87, 151.21), Australia".
_BRACKETED_NUMBERS = re.compile(r"\s*[(\[][^()\[\]]*\d[^()\[\]]*[)\]]")


def parse_place(text: str) -> tuple[str, str] | None:
    """(city, country) as a model answer names them, or None.

    Reads JSON (``{"city": ..., "country": ...}``), labelled fields (``City: Arezzo`` / ``Country: Italy``),
    "City[, Region], Country" in prose ("It's Arezzo, Italy."), "City, Region" where the region belongs
    to one country ("San Francisco, California" -> the country's name, "United States"), and, with no
    city, "in <Country>". In prose the country must be one GeoNames knows, so "Hello, world" is no
    place. Either element may be "" when the answer names only the other. Names are returned as written.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    for value in json_objects(text):
        found = place_from_json(value, country_of=_country_of, is_city=_is_city)
        if found:
            return found
    cleaned = _BRACKETED_NUMBERS.sub("", clean_text(text))
    found = labelled_place(cleaned) or place_in_text(cleaned, country_of=_country_of, is_city=_is_city)
    if found:
        return found
    country = country_in_text(cleaned, is_country=_is_country)
    return ("", country) if country else None


@dataclass(frozen=True)
class ParsedLocation:
    """A location read from a model answer.

    ``method`` says where ``lat``/``lon`` came from: "json" (a JSON object), "coordinates" (coordinates
    in prose), "place" (the named city/country geocoded offline; ``place`` holds the match) or "none"
    (no usable coordinates; ``city``/``country`` may still hold names that could not be geocoded).
    ``city`` and ``country`` are the names as the answer writes them, never filled in by reverse geocoding.
    """

    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""
    method: Literal["json", "coordinates", "place", "none"] = "none"
    place: GeoPlace | None = None

    @property
    def point(self) -> GeoPoint | None:
        return None if self.lat is None or self.lon is None else GeoPoint(self.lat, self.lon)


def parse_location(text: str) -> ParsedLocation:
    """Everything a model answer says about where a photo was taken; never raises.

    Order: coordinates in a JSON object, then coordinates in prose, then a "City, Country" answer geocoded
    offline (see `geocode`). Names of a city and country are read in every case.
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedLocation()
    city, country = parse_place(text) or ("", "")
    point = point_in_json(text)
    if point is not None:
        return ParsedLocation(point.lat, point.lon, city, country, "json")
    point = coordinates_in_text(text)
    if point is not None:
        return ParsedLocation(point.lat, point.lon, city, country, "coordinates")
    place = geocode(", ".join(part for part in (city, country) if part)) if city or country else None
    if place is not None:
        return ParsedLocation(place.lat, place.lon, city, country, "place", place)
    return ParsedLocation(city=city, country=country)
