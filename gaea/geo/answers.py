"""Reading a location out of free model text, as a careful reader would.

Real answers reason first and answer last (or the other way round), restate their coordinates in prose,
write JSON fenced, inline, nested or broken, sign a longitude in the JSON and letter it in the prose, give
placeholders, ranges and candidate lists, or refuse. `parse_location` reads the final answer: JSON (read
leniently by `gaea.jsontext`), then coordinates in prose, then a named place geocoded offline, and says
how it read it, or why it read nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from gaea.geo import _answer_text as wording
from gaea.geo._coordinates import Found, make_point, pairs_in_text, read_value
from gaea.geo._gazetteer import name_key
from gaea.geo._place_names import (
    Named,
    has_key,
    has_place_keys,
    labelled_places,
    lookup,
    names_alone,
    normalized_keys,
    place_of_json,
    places_in_prose,
)
from gaea.geo.places import GeoPlace, geocode, normalize_country, reverse_geocode_many
from gaea.jsontext import JsonSpan, find_json
from gaea.types import GeoPoint

Method = Literal["json", "coordinates", "place", "none"]


@dataclass(frozen=True)
class ParsedLocation:
    """A location read from a model answer.

    ``method`` says where ``lat``/``lon`` came from: "json" (a JSON object), "coordinates" (coordinates
    in prose), "place" (the named city/country geocoded offline; ``place`` holds the match) or "none"
    (no usable coordinates; ``city``/``country`` may still hold names that could not be geocoded, and
    ``reason`` says why nothing was read: a refusal, an error message, a placeholder, a range, ...).
    ``city`` and ``country`` are the names as the answer writes them (hedges such as "Likely" dropped),
    never filled in by reverse geocoding. ``sign_source`` is set where the answer gives one coordinate
    with two signs (a JSON ``"long": 7.62`` and a prose "7.62° W"): "country" when the country the
    answer names decided, "hemisphere" when the hemisphere letter did, or the method of the reading kept.
    """

    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""
    method: Method = "none"
    place: GeoPlace | None = None
    reason: str = ""
    sign_source: str = ""

    @property
    def point(self) -> GeoPoint | None:
        return None if self.lat is None or self.lon is None else GeoPoint(self.lat, self.lon)


# Two readings of one coordinate agree within this many degrees (answers round differently).
_SAME_VALUE = 0.011
# Candidates closer than this are one answer given twice.
_SAME_POINT_KM = 25.0
# A disowning sentence ("This is a placeholder for the coordinates") follows the values closely.
_DISOWN_REACH = 400

T = TypeVar("T")


@dataclass(frozen=True)
class _Candidate:
    """A point the answer gives, where it stands, how it was written."""

    start: int
    end: int
    point: GeoPoint
    method: Method
    lettered: frozenset[str] = frozenset()
    span: JsonSpan | None = None


class _Answer:
    """One answer, cleaned once, with its JSON values and prose coordinates found once."""

    def __init__(self, text: str) -> None:
        self.repaired = wording.repair_text(text)
        self.plain = wording.plain_text(self.repaired)
        self.spans = find_json(self.repaired)
        self.markers = wording.final_markers(self.plain)
        self.reasons: list[str] = []  # why no coordinates were read
        self.name_reasons: list[str] = []  # why no place was read
        located = [span for span in self.spans if _has_location_keys(span.value)]
        prose = _blank(self.plain, [(span.start, span.end) for span in located])
        self.prose = wording.blank_ranges(prose)
        if self.prose != prose:
            self.reasons.append("a range of coordinates, not a point")
        self.blind = wording.cannot_see_image(self.plain)
        # Names are told by their capitals; an answer written all in lower case ("paris, france") gets them.
        self.named = self.prose if any(char.isupper() for char in self.prose) else _capitalised(self.prose)

    # -- coordinates ------------------------------------------------------------------------------------

    def json_candidates(self) -> list[_Candidate]:
        found = []
        for span in self.spans:
            points = _json_points(span.value)
            if len(_distinct([point for point, _ in points])) > 1:
                self.reasons.append("several candidate coordinates and no final choice")
                continue
            if points:
                point, lettered = points[0]
                found.append(_Candidate(span.start, span.end, point, "json", lettered, span))
        return found

    def prose_candidates(self) -> list[_Candidate]:
        return [_candidate(found) for found in pairs_in_text(self.prose)]

    def coordinates(self, country: str) -> tuple[_Candidate | None, str]:
        """The final coordinates and, where their signs conflict, what decided; (None, "") for none."""
        from_json, from_prose = self.json_candidates(), self.prose_candidates()
        if from_json:
            chosen = self._revised_in_prose(_final(from_json, self.markers), from_prose)
        else:
            chosen = self._final_in_prose(from_prose, key=lambda found: found.point)
        if chosen is None:
            return None, ""
        chosen, source = _settle_signs(chosen, from_json + from_prose, country)
        if _is_null_island(chosen.point):
            self.reasons.append("placeholder coordinates (0, 0)")
            return None, ""
        if wording.disowns_values(self.plain[: chosen.end + _DISOWN_REACH], chosen.start):
            self.reasons.append("the answer calls its coordinates placeholders")
            return None, ""
        return chosen, source

    def _revised_in_prose(self, chosen: _Candidate, from_prose: list[_Candidate]) -> _Candidate:
        """The JSON answer, unless a final-answer marker after it introduces other coordinates in prose
        ("... After all, my final answer is 45.76, 4.83")."""
        later = [marker for marker in self.markers if marker >= chosen.end]
        index = wording.deciding([candidate.start for candidate in from_prose], later)
        if index is None or self.blind:
            return chosen
        revised = from_prose[index]
        if _km(revised.point, chosen.point) <= _SAME_POINT_KM or _mirrors(revised.point, chosen.point):
            return chosen
        return chosen if wording.refusal_after(self.plain, revised.start) else revised

    def _final_in_prose(self, candidates: Sequence[T], *, key: Callable[[T], Any]) -> T | None:
        """The final answer among prose candidates, unless the answer refuses after it or cannot see."""
        if not candidates:
            return None
        if self.blind:
            self.reasons.append("the model says it cannot see the image")
            return None
        chosen = _final_or_only(candidates, self.markers, key=key, plain=self.prose)
        if chosen is None:
            self.reasons.append("several candidates and no final choice")
            return None
        if wording.refusal_after(self.plain, _start(chosen)):
            self.reasons.append("a refusal: the places named are hints, not an answer")
            return None
        return chosen

    # -- names ------------------------------------------------------------------------------------------

    def names(self, from_span: JsonSpan | None = None) -> tuple[str, str]:
        """(city, country) of the final answer: from its JSON object where that has place fields (whose
        "Unknown" is the answer's own word that it names no place), else labelled fields, else "City,
        Country" / "in Country" in prose."""
        if from_span is not None and has_place_keys(from_span.value):
            with_place = [from_span]
        else:
            with_place = [span for span in self.spans if has_place_keys(span.value)]
        if with_place:
            found = place_of_json(_final(with_place, self.markers).value)
            if not found:
                self.name_reasons.append("placeholder place names")
            return found or ("", "")
        labelled = labelled_places(self.named)
        if labelled:
            chosen = _final(labelled, self.markers)
            return chosen.city, chosen.country
        in_prose = places_in_prose(self.named)
        taken = {named.start for named in in_prose}
        in_prose += [named for named in names_alone(self.named, self.markers) if named.start not in taken]
        in_prose.sort(key=_start)
        named = self._final_in_prose(in_prose, key=_place_key)
        return (named.city, named.country) if named is not None else ("", "")

    def names_after(self, position: int) -> tuple[str, str]:
        """(city, country) named in prose from the final-answer marker before `position` on (where a prose
        answer revises the JSON one, the JSON's names are not its names)."""
        start = max([marker for marker in self.markers if marker <= position], default=position)
        named = [n for n in labelled_places(self.named) + places_in_prose(self.named) if n.start >= start]
        first = min(named, key=_start, default=None)
        return (first.city, first.country) if first is not None else ("", "")

    def reason(self) -> str:
        if self.blind:
            return "the model says it cannot see the image"
        if self.reasons or self.name_reasons:
            return (self.reasons + self.name_reasons)[0]
        if wording.refuses(self.plain):
            return "a refusal"
        return "names no location"


def parse_location(text: str) -> ParsedLocation:
    """Everything a model answer says about where a photo was taken; never raises.

    Order: the final JSON object with coordinates (a lenient reader: unquoted values, numbers as
    strings, nested objects, any of lat / latitude / lng / long / lon / longitude), else coordinates in
    prose (signed decimals, N/S/E/W, degrees-minutes-seconds; the final answer's, not those mentioned
    while reasoning), else the named city / country geocoded offline (`gaea.geo.geocode`). Where the JSON
    and the prose sign a coordinate differently, the country the answer names decides (else the
    hemisphere letter); ``sign_source`` says which. Refusals, error messages, placeholders ("Unknown",
    0, 0), ranges and candidate lists without a final choice give no location, and ``reason`` says so.
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedLocation(reason="empty answer")
    answer = _Answer(text)
    if wording.is_error_message(answer.plain):
        return ParsedLocation(reason="an error message, not an answer")
    city, country = answer.names()
    chosen, sign_source = answer.coordinates(country)
    if chosen is not None:
        if chosen.span is not None:
            city, country = answer.names(chosen.span)
        elif answer.spans and chosen.method == "coordinates":
            city, country = answer.names_after(chosen.start)
        return ParsedLocation(chosen.point.lat, chosen.point.lon, city, country, chosen.method, sign_source=sign_source)
    if city or country:
        place = geocode(", ".join(part for part in (city, country) if part))
        if place is not None:
            return ParsedLocation(place.lat, place.lon, city, country, "place", place)
        reason = f"the gazetteer knows no place {', '.join(part for part in (city, country) if part)!r}"
        return ParsedLocation(city=city, country=country, reason=reason)
    return ParsedLocation(reason=answer.reason())


def parse_coordinates(text: str) -> GeoPoint | None:
    """The coordinates a model answer gives, or None (see `parse_location`, which also reads places).

    Tries JSON objects first (``{"latitude": 43.4, "longitude": 11.8}``, GeoJSON points, ``lat``/``lon``/
    ``lng`` keys, numbers as strings), then prose: ``lat/lon:`` headers, labelled values
    (``lat: 43.4 lon: 11.8``), hemisphere-marked values in decimal degrees, degrees-decimal-minutes or
    degrees-minutes-seconds (``43°28'02.8"N 11°53'06.5"E``, ``0.3713° S, 36.0564° E``), and finally bare
    signed decimal pairs (``(43.467, 11.885)``). Values out of range, years and plain integers are not
    coordinates.
    """
    parsed = parse_location(text)
    return parsed.point if parsed.method in ("json", "coordinates") else None


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
    answer = _Answer(text)
    if wording.is_error_message(answer.plain):
        return None
    city, country = answer.names()
    return (city, country) if city or country else None


# ---------------------------------------------------------------------------------------------------------
# Choosing the final answer among candidates


def _start(candidate: Any) -> int:
    return candidate.start


def _final(candidates: Sequence[T], markers: list[int]) -> T:
    """The candidate a final-answer marker introduces, else the last one (answers conclude last)."""
    index = wording.deciding([_start(candidate) for candidate in candidates], markers)
    return candidates[index if index is not None else -1]


_CANDIDATE_CUE = re.compile(
    r"(?i)\b(?:candidates?|possibilit(?:y|ies)|possible\s+(?:locations?|places?|cities|countries|answers?)|"
    r"options?|alternatives?|either|could\s+be|might\s+be|may\s+be)\b"
)


def _final_or_only(candidates: Sequence[T], markers: list[int], *, key: Callable[[T], Any], plain: str) -> T | None:
    """Like `_final`, for prose. Candidates that agree (one point given twice, "Spain" then "Barcelona,
    Spain") are one answer, its most specific form; different ones offered as alternatives ("either A or
    B", "Possible locations: ...") with no marker choosing one are no answer; else the last stands."""
    index = wording.deciding([_start(candidate) for candidate in candidates], markers)
    if index is not None:
        return candidates[index]
    keys = [key(candidate) for candidate in candidates]
    if all(_compatible(a, b) for a in keys for b in keys):
        return max(zip(candidates, keys, strict=True), key=lambda pair: _richness(pair[1]))[0]
    if any(getattr(candidate, "alternatives", False) for candidate in candidates) or _offered_as_alternatives(
        candidates, plain
    ):
        return None
    return candidates[-1]


def _offered_as_alternatives(candidates: Sequence[Any], plain: str) -> bool:
    """Whether different candidates stand in one sentence joined by "or", or follow a word that offers
    alternatives ("Possible locations:", "It could be")."""
    if _CANDIDATE_CUE.search(plain, 0, candidates[-1].start) or all(_in_list_item(plain, c.start) for c in candidates):
        return True
    for first, second in zip(candidates, candidates[1:], strict=False):
        between = plain[getattr(first, "end", first.start) : second.start]
        if re.search(r"(?i)\bor\b", between) and not re.search(r"[.!?]\s|\n", between):
            return True
    return False


_LIST_ITEM = re.compile(r"\s*(?:\d{1,2}[.)]|[-•])\s")


def _in_list_item(plain: str, position: int) -> bool:
    """Whether `position` lies on a line of a numbered or bulleted list ("1. Paris (48.85, 2.35)")."""
    return _LIST_ITEM.match(plain, plain.rfind("\n", 0, position) + 1) is not None


def _compatible(a: Any, b: Any) -> bool:
    """Whether two candidate keys can be one answer: points within 25 km; places whose city and country
    agree where both name one."""
    if isinstance(a, GeoPoint):
        return _km(a, b) <= _SAME_POINT_KM
    return all(not x or not y or x == y for x, y in zip(a, b, strict=True))


def _richness(key: Any) -> int:
    return 0 if isinstance(key, GeoPoint) else 2 * bool(key[0]) + bool(key[1])


def _place_key(named: Named) -> tuple[str, str]:
    return name_key(named.city), normalize_country(named.country) or name_key(named.country)


def _distinct(points: list[GeoPoint]) -> list[GeoPoint]:
    kept: list[GeoPoint] = []
    for point in points:
        if not any(_km(point, other) <= _SAME_POINT_KM for other in kept):
            kept.append(point)
    return kept


def _km(a: GeoPoint, b: GeoPoint) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    cos = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(lon1 - lon2)
    return 6371.0088 * math.acos(max(-1.0, min(1.0, cos)))


# ---------------------------------------------------------------------------------------------------------
# Sign conflicts


def _mirrors(a: GeoPoint, b: GeoPoint) -> bool:
    """Whether b is a with some sign flipped (same magnitudes, a different sign on a non-zero axis)."""
    pairs = ((a.lat, b.lat), (a.lon, b.lon))
    same_size = all(abs(abs(x) - abs(y)) <= _SAME_VALUE for x, y in pairs)
    flipped = any(abs(x) > _SAME_VALUE and (x > 0) != (y > 0) for x, y in pairs)
    return same_size and flipped


def _settle_signs(chosen: _Candidate, candidates: list[_Candidate], country: str) -> tuple[_Candidate, str]:
    """The chosen reading, or a mirror of it with other signs, decided by the named country's place on
    the map, else by a hemisphere letter; with what decided ("" when nothing conflicted)."""
    mirrors = [other for other in candidates if _mirrors(chosen.point, other.point)]
    if not mirrors:
        return chosen, ""
    options = [chosen] + mirrors
    code = normalize_country(country) if country else None
    if code is not None:
        points = [option.point for option in options]
        places = reverse_geocode_many([point.lat for point in points], [point.lon for point in points])
        inside = [option for option, place in zip(options, places, strict=True) if place.country_code == code]
        if inside and len(_distinct([option.point for option in inside])) == 1:
            return _keep_method(chosen, inside[0].point), "country"
    lettered = [option for option in options if _signed_by_letters(option, chosen)]
    if len(_distinct([option.point for option in lettered])) == 1:
        return _keep_method(chosen, lettered[0].point), "hemisphere"
    return chosen, chosen.method


def _signed_by_letters(option: _Candidate, chosen: _Candidate) -> bool:
    """Whether a hemisphere letter signs every axis on which `option` differs in sign from `chosen`."""
    differing = {
        axis
        for axis, x, y in (("lat", chosen.point.lat, option.point.lat), ("lon", chosen.point.lon, option.point.lon))
        if (x > 0) != (y > 0)
    }
    return option is not chosen and differing <= option.lettered


def _keep_method(chosen: _Candidate, point: GeoPoint) -> _Candidate:
    return _Candidate(chosen.start, chosen.end, point, chosen.method, chosen.lettered, chosen.span)


def _is_null_island(point: GeoPoint) -> bool:
    return abs(point.lat) < 1e-9 and abs(point.lon) < 1e-9


# ---------------------------------------------------------------------------------------------------------
# Points in decoded JSON

_LAT_KEYS = ("latitude", "lat")
_LON_KEYS = ("longitude", "lon", "lng", "long")
_PAIR_KEYS = ("coordinates", "coords", "coordinate", "location", "gps", "position", "latlon", "lat_lon", "latlng")
_GEOJSON_KEYS = ("geometry", "geojson")


def _json_number(value: Any, axis: str) -> tuple[float, bool] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return (number, False) if math.isfinite(number) and abs(number) <= (90 if axis == "lat" else 180) else None
    if isinstance(value, str):
        return read_value(wording.plain_text(value), axis)
    return None


def _point_of(lat: tuple[float, bool] | None, lon: tuple[float, bool] | None) -> tuple[GeoPoint, frozenset] | None:
    if lat is None or lon is None:
        return None
    point = make_point(lat[0], lon[0])
    lettered = frozenset(axis for axis, part in (("lat", lat), ("lon", lon)) if part[1])
    return (point, lettered) if point is not None else None


def _pair_from_list(value: Any, *, geojson: bool) -> tuple[GeoPoint, frozenset] | None:
    if not (isinstance(value, (list, tuple)) and len(value) in (2, 3)):
        return None
    if geojson:
        return _point_of(_json_number(value[1], "lat"), _json_number(value[0], "lon"))
    return _point_of(_json_number(value[0], "lat"), _json_number(value[1], "lon"))


def _json_points(value: Any, *, geojson: bool = False) -> list[tuple[GeoPoint, frozenset]]:
    """Every point in a decoded JSON value (one per object: lat/lon keys, a GeoJSON geometry, a pair)."""
    if isinstance(value, list):
        return [point for item in value for point in _json_points(item, geojson=geojson)]
    if not isinstance(value, dict):
        return []
    keyed = normalized_keys(value)
    lat, lon = lookup(keyed, _LAT_KEYS), lookup(keyed, _LON_KEYS)
    if lat is not None and lon is not None:
        point = _point_of(_json_number(lat, "lat"), _json_number(lon, "lon"))
        return [point] if point is not None else []
    is_geojson = geojson or str(keyed.get("type") or "").lower() in ("point", "multipoint")
    pair = lookup(keyed, _PAIR_KEYS)
    point = _pair_from_list(pair, geojson=is_geojson)
    if point is None and isinstance(pair, str):
        found = pairs_in_text(wording.plain_text(pair))
        point = (found[0].point, found[0].lettered) if found else None
    if point is not None:
        return [point]
    return [
        point
        for key, nested in keyed.items()
        if isinstance(nested, (dict, list))
        for point in _json_points(nested, geojson=is_geojson or key in _GEOJSON_KEYS)
    ]


def _has_location_keys(value: Any) -> bool:
    """Whether a decoded JSON value says where (coordinates or place fields, usable or not): such a value
    is the answer's JSON, and its numbers are not read again as prose."""
    if isinstance(value, list):
        return any(_has_location_keys(item) for item in value)
    if not isinstance(value, dict):
        return False
    keyed = normalized_keys(value)
    if has_key(keyed, _LAT_KEYS + _LON_KEYS + _PAIR_KEYS) or has_place_keys(value):
        return True
    return any(_has_location_keys(item) for item in keyed.values() if isinstance(item, (dict, list)))


def _candidate(found: Found) -> _Candidate:
    return _Candidate(found.start, found.end, found.point, "coordinates", found.lettered)


def _capitalised(text: str) -> str:
    """Every word's first letter in upper case ("paris, france" -> "Paris, France"), offsets kept."""
    return re.sub(r"(?<![\w'])[a-z]", lambda match: match.group(0).upper(), text)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span replaced by spaces (offsets kept)."""
    pieces, last = [], 0
    for start, end in sorted(spans):
        pieces += [text[last:start], " " * (end - start)]
        last = end
    return "".join(pieces) + text[last:]
