"""Coordinates in every common notation: one value ("43.4674", "43°28'02.8\"N", "11.885 E") and the pairs
prose writes them in, each found with its position so that the reader can tell the final answer from
coordinates mentioned while reasoning.

Regular expressions, hand-written: no library reads coordinates inside free text (geopy's
``Point.from_string`` reads a string that is nothing but one point). Text is expected cleaned by
`gaea.geo._answer_text.plain_text` (ASCII primes, quotes and minus signs) and with ranges blanked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

from gaea.types import GeoPoint

Axis = str  # "lat" or "lon"

_HEMI = r"(?:[NSEW](?![A-Za-z])|(?i:north|south|east|west)\b)"
_MINUTES = r"(?:'(?!')|(?i:minutes?|mins?)\b)"
_SECONDS = r"(?:\"|''|(?i:seconds?|secs?)\b)"
_ANGLE = (
    r"(?P<sign>[-+])?(?P<deg>\d{1,3}(?:\.\d+)?)(?!\d)\s*(?:°|(?i:degrees|degree|deg)\b)?"
    rf"(?:\s*(?P<min>\d{{1,2}}(?:\.\d+)?)\s*{_MINUTES}(?:\s*(?P<sec>\d{{1,2}}(?:\.\d+)?)\s*{_SECONDS})?)?"
)
# A value after a label ("lat: 43.4", "Latitude 43°28'N", "latitude = N 43.4").
_VALUE = re.compile(rf"(?:(?P<pre>{_HEMI})\s*)?{_ANGLE}(?:\s*(?P<post>{_HEMI}))?")
# A coordinate that names its hemisphere, after ("43.4674N", "43°28'02.8\"N") or before ("N 43.4674").
_MARKED = re.compile(
    rf"(?<![\w.]){_ANGLE}\s*(?P<post>{_HEMI})|(?<![\w.])(?P<pre>[NSEW])\s*(?P<sign2>)(?P<deg2>\d{{1,3}}(?:\.\d+)?)"
    rf"(?!\d)\s*(?:°|(?i:degrees|deg)\b)?(?:\s*(?P<min2>\d{{1,2}}(?:\.\d+)?)\s*{_MINUTES}"
    rf"(?:\s*(?P<sec2>\d{{1,2}}(?:\.\d+)?)\s*{_SECONDS})?)?"
)
_HEMI_AXIS = {"n": ("lat", 1.0), "s": ("lat", -1.0), "e": ("lon", 1.0), "w": ("lon", -1.0)}
_LIMIT = {"lat": 90.0, "lon": 180.0}


@dataclass(frozen=True)
class Found:
    """A point found in text: where it stands, and which axes a hemisphere letter signed ("7.62° W")."""

    start: int
    end: int
    point: GeoPoint
    lettered: frozenset[Axis] = frozenset()


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


def in_range(value: float, axis: Axis) -> bool:
    return math.isfinite(value) and abs(value) <= _LIMIT[axis]


def make_point(lat: float | None, lon: float | None) -> GeoPoint | None:
    if lat is None or lon is None or not (in_range(lat, "lat") and in_range(lon, "lon")):
        return None
    return GeoPoint(float(lat), float(lon))


def read_value(text: str, axis: Axis) -> tuple[float, bool] | None:
    """One latitude or longitude written alone ("43.4674", "-0.37", "43°28'02.8\"N", "11.885 E"), and
    whether a hemisphere letter gave its sign.

    None when the text is not one coordinate, names the other axis's hemisphere, or is out of range.
    """
    match = _VALUE.fullmatch(text.strip())
    if match is None:
        return None
    hemisphere = _hemisphere(match["pre"] or match["post"])
    if hemisphere is not None and hemisphere[0] != axis:
        return None
    value = _angle(match.groupdict())
    if value is None:
        return None
    value = _signed(value, match["sign"], hemisphere)
    return (value, hemisphere is not None) if in_range(value, axis) else None


# ---------------------------------------------------------------------------------------------------------
# Pairs in prose, each finder yielding every pair it sees.

# English labels, and the Spanish / Portuguese / Italian ones (latitud, longitud, latitudine, ...).
_LABEL = re.compile(
    r"(?i)\b(?P<axis>lat(?:itude|itud|itudine)?|lon(?:gitude|gitud|gitudine)?|lng|long)\b[\"']?\s*(?:\([^)]{0,12}\))?"
    r"\s*[:=]?\s*"
)
_BOTH_LABELS = re.compile(
    r"(?i)\b(?P<first>lat|lon|lng|long)(?:gitude|itude)?\s*[/,&]\s*(?:lat|lon|lng|long)(?:gitude|itude)?\b"
    r"\s*\)?\s*[:=]?\s*[(\[]?\s*(?P<a>[-+]?\d{1,3}(?:\.\d+)?)\s*°?\s*[,;/ ]\s*(?P<b>[-+]?\d{1,3}(?:\.\d+)?)"
)
_BARE_PAIR = re.compile(
    r"(?<![\w.])(?P<a>[-+]?\d{1,3}\.(?P<fa>\d+))\s*°?\s*(?P<sep>[,;]|\s)\s*(?P<b>[-+]?\d{1,3}\.(?P<fb>\d+))\s*°?"
    r"(?!\.?\d|\w|\s*(?i:km|kilomet|mi\b|miles|meters|metres|m\b|%|percent))"
)
_MARKED_GAP = re.compile(r"(?i)^[\s,;/|()\[\]]*(?:and\s+)?(?:(?:lat(?:itude)?|lon(?:gitude)?|lng|long)\s*[:=]?\s*)?$")
_COORDINATE_WORD = re.compile(r"(?i)(?:coord|gps|location|position|\blat|\blon|\bpoint)[^\d]{0,20}$")
# Labels of one pair stand close together; a latitude label far from a longitude one pairs with nothing.
_LABEL_REACH = 120


def _marked_components(text: str) -> Iterator[tuple[int, int, Axis, float]]:
    for match in _MARKED.finditer(text):
        groups = match.groupdict()
        suffix = "" if groups["deg"] is not None else "2"
        hemisphere = _hemisphere(groups["post"] or groups["pre"])
        value = _angle(groups, suffix)
        if hemisphere is None or value is None:
            continue
        value = _signed(value, groups[f"sign{suffix}"] or None, hemisphere)
        if in_range(value, hemisphere[0]):
            yield match.start(), match.end(), hemisphere[0], value


def marked_pairs(text: str) -> Iterator[Found]:
    """A latitude and a longitude that name their hemispheres, next to each other, in either order."""
    components = list(_marked_components(text))
    used = -1
    for index, ((start, end, axis, value), (next_start, next_end, next_axis, next_value)) in enumerate(
        pairwise(components)
    ):
        if index <= used or axis == next_axis or not _MARKED_GAP.match(text[end:next_start]):
            continue
        point = make_point(value, next_value) if axis == "lat" else make_point(next_value, value)
        if point is not None:
            used = index + 1
            yield Found(start, next_end, point, frozenset({"lat", "lon"}))


def labelled_pairs(text: str) -> Iterator[Found]:
    """ "lat: 43.4 lon: 11.8", "Latitude: -0.37, Longitude: 36.05", "latitude = N 43.4", in either order."""
    pending: dict[Axis, tuple[int, int, float, bool]] = {}
    for label in _LABEL.finditer(text):
        axis = "lat" if label["axis"].lower().startswith("lat") else "lon"
        value = _VALUE.match(text, label.end())
        parsed = read_value(value.group(0), axis) if value is not None else None
        if parsed is None:
            continue
        other = pending.get("lon" if axis == "lat" else "lat")
        if other is not None and label.start() - other[1] > _LABEL_REACH:
            pending.clear()
            other = None
        pending[axis] = (label.start(), value.end(), *parsed)  # type: ignore[union-attr]
        if other is not None:
            lat, lon = pending["lat"], pending["lon"]
            point = make_point(lat[2], lon[2])
            if point is not None:
                lettered = frozenset(name for name, part in (("lat", lat), ("lon", lon)) if part[3])
                yield Found(min(lat[0], lon[0]), max(lat[1], lon[1]), point, lettered)
            pending.clear()


def header_pairs(text: str) -> Iterator[Found]:
    """ "lat/lon: 43.4, 11.8" or "(lon, lat) = (11.8, 43.4)": the header says which number is which."""
    for match in _BOTH_LABELS.finditer(text):
        a, b = float(match["a"]), float(match["b"])
        point = make_point(b, a) if match["first"].lower() != "lat" else make_point(a, b)
        if point is not None:
            yield Found(match.start(), match.end(), point)


def bare_pairs(text: str) -> Iterator[Found]:
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
        point = make_point(float(match["a"]), float(match["b"])) if plausible else None
        if point is not None:
            yield Found(match.start(), match.end(), point)


def _bracketed(text: str, start: int, end: int) -> bool:
    return text[:start].rstrip()[-1:] in ("(", "[") and text[end:].lstrip()[:1] in (")", "]")


def _after_keyword(text: str, start: int) -> bool:
    return _COORDINATE_WORD.search(text, max(0, start - 40), start) is not None


# Most explicit first: where two finders see the same numbers, the one that knows more about them wins.
_FINDERS: tuple[Callable[[str], Iterator[Found]], ...] = (header_pairs, labelled_pairs, marked_pairs, bare_pairs)


def pairs_in_text(text: str) -> list[Found]:
    """Every coordinate pair written in `text`, in order of appearance, each span read once."""
    kept: list[Found] = []
    for finder in _FINDERS:
        for found in finder(text):
            if not any(found.start < other.end and other.start < found.end for other in kept):
                kept.append(found)
    return sorted(kept, key=lambda found: found.start)
