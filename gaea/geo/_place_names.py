"""Place names in model answers: city and country values in JSON, labelled fields ("City: Arezzo") and
"City[, Region], Country" or "in <Country>" in prose, each checked against the offline gazetteer.

Names are returned as the answer writes them, minus hedges ("Likely USA" -> "USA"); placeholders
("Unknown", "European City"), alternatives ("United States or Canada") and continents are no name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gaea.geo._answer_text import is_alternatives, is_generic, is_placeholder, without_hedges
from gaea.geo._gazetteer import CONTINENT_NAMES, gazetteer, name_key
from gaea.geo.places import _city_rows, _country_fields, _in_country, normalize_country

_CITY_KEYS = ("city", "town", "village", "locality", "municipality", "place", "cityname", "city_name")
_COUNTRY_KEYS = ("country", "countryname", "country_name", "nation")
_LOCATION_KEYS = ("location", "place_name", "placename", "address", "answer", "prediction", "guess")
_LABELLED_FIELD = re.compile(r"(?im)\b(?P<key>city|town|country)\b[\"']?\s*(?:name)?\s*[:=]\s*(?P<value>[^\n,;|]+)")
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
_CONTINENT_WORDS = frozenset(name_key(name) for name in CONTINENT_NAMES.values()) | {
    "europe", "asia", "africa", "america", "americas", "oceania", "latin america", "middle east",
    "scandinavia", "balkans", "caribbean", "mediterranean",
}  # fmt: skip
# "in rural Kenya", "in north-eastern Brazil": words that place the answer within the country; lower case
# only, since a capitalised one is part of the name ("South Africa", "North Macedonia").
_QUALIFIER = (
    r"(?:rural|urban|coastal|inland|mainland|remote|central|upstate|(?:north|south)(?:-?(?:east|west))?(?:ern)?|"
    r"east(?:ern)?|west(?:ern)?)\s+"
)
_WITHIN = (
    rf"(?:{_QUALIFIER}|(?:a|the)\s+(?:{_QUALIFIER})*(?:parts?|region|area|countryside|outskirts|north|south|east|"
    r"west|cent(?:er|re)|interior|heart)\s+of\s+)*"
)
# "Probably Kenya.", "Most likely: Kenya": a hedge before a name standing alone.
_HEDGED = r"(?:(?i:most\s+likely|probably|likely|possibly|perhaps|maybe|somewhere\s+in)\s*[:,]?\s+)?"
_IN_COUNTRY = re.compile(
    r"(?i:\bin|\bcountry is)\s+" + _WITHIN + r"((?:the\s+)?[A-Z][\w'.-]*(?:\s+(?:and|of|the|[A-Z][\w'.-]*)){0,4})"
)
_LIST_AFTER = re.compile(r"\s*(?:,\s*|/\s*|,?\s*(?:or|and|nor)\s+)(?:possibly\s+|perhaps\s+|maybe\s+)?(?:the\s+)?")
_OR = re.compile(r"(?i)\bor\b|/")
_NEGATED = re.compile(r"(?i)\b(?:not|n't|never|nowhere)\s+(?:\w+\s+)?\Z")
# Coordinates in brackets interrupt "Sydney (-33.87, 151.21), Australia".
_BRACKETED_NUMBERS = re.compile(r"[(\[][^()\[\]]*\d[^()\[\]]*[)\]]")


@dataclass(frozen=True)
class Named:
    """A place named in prose: where, the city ("" when only a country is named) and the country."""

    start: int
    city: str
    country: str
    alternatives: bool = False  # named beside another with "or" in the same sentence


# ---------------------------------------------------------------------------------------------------------
# Country and city checks against the gazetteer.


def is_country(text: str) -> bool:
    return normalize_country(text) is not None


def country_of(text: str) -> str | None:
    """`text` itself when it names a country; the country's name when it names a region of just one
    country ("California" -> "United States"); else None."""
    if is_country(text):
        return text
    key = name_key(text)
    codes = {code for code, _ in gazetteer().region_keys.get(key, ())} if len(key) >= 4 else set()
    return _country_fields(codes.pop())[0] if len(codes) == 1 else None


def is_city(city: str, country: str = "") -> bool:
    code = normalize_country(country) if country else None
    matches = _city_rows(city)
    return bool(_in_country(matches, code) if code else matches)


def is_city_named(name: str, population: int = 0) -> bool:
    """Whether a city of at least `population` people has this as its primary name (alternate names are
    too loose to stand alone: GeoNames lists "The", "Of" and "Central" among them)."""
    people = gazetteer().cities["population"]
    return any(primary and people[row] >= population for row, primary in _city_rows(name))


def is_known_place(name: str) -> bool:
    return is_city(name) or bool(gazetteer().small_place_index.get(name_key(name))) or country_of(name) is not None


# ---------------------------------------------------------------------------------------------------------
# Values


def _strip_value(value: str) -> str:
    return value.strip().strip("\"'`.,;:!?()[]{}<>*\\ \t\n").strip()


def city_value(value: Any) -> str:
    """The city a value names, or "" for a placeholder, a generic phrase or a choice of several."""
    if not isinstance(value, str):
        return ""
    name = without_hedges(_strip_value(value.split(",")[0]))
    if is_placeholder(name) or is_alternatives(name) or (is_generic(name) and not is_known_place(name)):
        return ""
    return name


def country_value(value: Any) -> str:
    """The country a value names ("Likely USA" -> "USA"), or "" for a placeholder, a choice of several
    or a continent ("Likely somewhere in mainland Europe")."""
    if not isinstance(value, str):
        return ""
    name = without_hedges(_strip_value(value))
    if is_placeholder(name) or is_alternatives(name) or is_generic(name):
        return ""
    if country_of(name) is None and _CONTINENT_WORDS & _word_runs(name_key(name)):
        return ""
    return name


def _word_runs(key: str) -> set[str]:
    words = key.split()
    return {" ".join(words[start:end]) for start in range(len(words)) for end in range(start + 1, len(words) + 1)}


def normalized_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """The mapping with keys lower-cased and stripped of what is no letter, digit or underscore (a repaired
    JSON may carry '\\n\\n"lat' as a key)."""
    return {re.sub(r"[^a-z0-9_]", "", str(key).lower()): value for key, value in mapping.items()}


def _matching_key(mapping: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` in a key-normalised mapping; keys may carry a prefix ("predicted_city")."""
    for key in keys:
        if key in mapping:
            return key
    return next((name for name in mapping if name.rsplit("_", 1)[-1] in keys), None)


def lookup(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of `keys` in a key-normalised mapping (None when there is none)."""
    key = _matching_key(mapping, keys)
    return None if key is None else mapping[key]


def has_key(mapping: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return _matching_key(mapping, keys) is not None


def place_of_json(value: Any) -> tuple[str, str] | None:
    """(city, country) from the first object in a decoded JSON value with a usable city or country (either
    may be ""), or from a "location" string such as "Arezzo, Italy"."""
    if isinstance(value, list):
        places = list(filter(None, map(place_of_json, value)))
        distinct = {(name_key(city), normalize_country(country) or name_key(country)) for city, country in places}
        return places[0] if len(distinct) == 1 else None  # several: candidates, no final choice
    if not isinstance(value, dict):
        return None
    keyed = normalized_keys(value)
    raw_city, raw_country = lookup(keyed, _CITY_KEYS), lookup(keyed, _COUNTRY_KEYS)
    city, country = city_value(raw_city), country_value(raw_country)
    if not country and isinstance(raw_city, str) and "," in raw_city:
        country = country_value(raw_city.rsplit(",", 1)[-1])  # "city": "Boston, USA"
    if city or country:
        return city, country
    location = lookup(keyed, _LOCATION_KEYS)
    if isinstance(location, str):
        found = next((named for named in places_in_prose(location) if not named.alternatives), None)
        if found:
            return found.city, found.country
    nested = (place_of_json(item) for item in value.values() if isinstance(item, (dict, list)))
    return next(filter(None, nested), None)


def has_place_keys(value: Any) -> bool:
    """Whether a decoded JSON value carries city / country fields at all (usable or not)."""
    if isinstance(value, list):
        return any(has_place_keys(item) for item in value)
    if not isinstance(value, dict):
        return False
    keyed = normalized_keys(value)
    if has_key(keyed, _CITY_KEYS + _COUNTRY_KEYS) or isinstance(lookup(keyed, _LOCATION_KEYS), str):
        return True
    return any(has_place_keys(item) for item in keyed.values() if isinstance(item, (dict, list)))


# ---------------------------------------------------------------------------------------------------------
# Prose


def labelled_places(text: str) -> list[Named]:
    """ "City: Arezzo" / "Country: Italy" fields (markdown bullets included), grouped into places."""
    found: list[Named] = []
    fields: dict[str, str] = {}
    start = -1
    for match in _LABELLED_FIELD.finditer(text):
        key = "country" if match["key"].lower() == "country" else "city"
        value = city_value(match["value"]) if key == "city" else country_value(match["value"])
        if key in fields:
            found.append(Named(start, fields.get("city", ""), fields.get("country", "")))
            fields = {}
        if not fields:
            start = match.start()
        if value:
            fields[key] = value
    if fields:
        found.append(Named(start, fields.get("city", ""), fields.get("country", "")))
    return [named for named in found if named.city or named.country]


def _country_prefix(part: str, *, countries_only: bool = False) -> str | None:
    """The country a comma-separated part starts with ("Italy." -> "Italy", "United States of America"),
    as `country_of` reports it (with `countries_only`, a region of one country does not count)."""
    words = part.split()
    for length in range(min(len(words), 6), 0, -1):
        candidate = _strip_value(" ".join(words[:length]))
        is_code = candidate.isalpha() and len(candidate) <= 3
        # A two- or three-letter code counts only in capitals ("Arezzo, IT"), never "it"/"us" in prose.
        if not candidate or (is_code and not candidate.isupper()):
            continue
        country = (candidate if is_country(candidate) else None) if countries_only else country_of(candidate)
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


def _choose_city(words: list[str], country: str) -> str:
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


def _listed(parts: list[str], index: int, city: str, country: str) -> bool:
    """Whether parts[index] is one item of a list of countries or regions ("Mexico, Panama, or the
    Dominican Republic"; "Arizona, New Mexico, or Texas") rather than the country of a city."""
    following = parts[index + 1] if index + 1 < len(parts) else ""
    if re.match(r"\s*(?:or|and|nor)\b", following) or re.match(r"\s*(?:or|and)\b", parts[index]):
        return True
    if is_city(city, country):
        return False
    # A country before the country ("Mexico, Panama"), or a region of another country, is an item of a list.
    return is_country(city) or normalize_country(country_of(city) or "") not in (None, normalize_country(country))


def _sentences(text: str) -> Iterator[tuple[int, str]]:
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        yield start, text[start : match.start()]
        start = match.end()
    yield start, text[start:]


def _city_country_in(offset: int, sentence: str) -> Iterator[Named]:
    parts = sentence.split(",")
    offsets = [offset + sum(len(part) + 1 for part in parts[:index]) for index in range(len(parts))]
    index = 1
    while index < len(parts):
        country = _country_prefix(parts[index])
        if country is None:
            index += 1
            continue
        first = index - 1
        while first > 0 and _is_name_like(parts[first]) and _name_tail(parts[first - 1]):
            first -= 1
        # "Sydney Opera House, Sydney, NSW, Australia": the first part of the chain that is a city of the country.
        chain = [part for part in range(first, index) if _name_tail(parts[part])]
        known = [part for part in chain if is_city(" ".join(_name_tail(parts[part])), country)]
        first = known[0] if known else first
        words = _name_tail(parts[first])
        city = _choose_city(words, country) if words else ""
        if city and not _listed(parts, index, city, country):
            tail_start = offsets[first] + parts[first].rfind(words[0])
            region = country_of(city) is not None and not is_city(city, country)
            yield Named(tail_start, "" if region else city, country)  # "Bavaria, Germany": the country
        index += 1


def places_in_prose(text: str) -> list[Named]:
    """ "…City[, Region], Country…" and "…in <Country>…" in prose, in order of appearance.

    The country must be one GeoNames knows (or a region of just one country: "San Francisco,
    California" -> "United States"), so "Hello, world" is no place. Places named beside another with "or"
    in one sentence are marked as alternatives.
    """
    found: list[Named] = []
    text = _BRACKETED_NUMBERS.sub(lambda match: " " * len(match.group(0)), text)
    for offset, sentence in _sentences(text):
        here = list(_city_country_in(offset, sentence))
        here += [named for named in _countries_in(offset, sentence) if not _covered(named, here)]
        here.sort(key=lambda named: named.start)
        several = len({(name_key(n.city), name_key(n.country)) for n in here}) > 1 and _OR.search(sentence)
        found += [Named(n.start, n.city, n.country, alternatives=bool(several)) for n in here]
    return found


_LEAD_IN = re.compile(
    r"(?i)\b(?:this|it|that|the\s+(?:location|place|photo|image|picture|city|country|answer))"
    r"(?:'s|\s+(?:is|was|looks\s+like|appears\s+to\s+be|seems\s+to\s+be|must\s+be))\s+"
    r"|\b(?:location|place|where|prediction)\s*:\s*"
)
# "The photo was taken in Hanoi.": a city alone after such a verb, if it is a large one (not "in March").
_TAKEN_IN = re.compile(r"(?i)\b(?:taken|located|situated|photographed|shot|captured)\s+(?:in|at)\s+")
_LARGE_CITY = 100_000
_NAME_ALONE = re.compile(
    r"\s*(?:is\s+|would\s+be\s+|[:=-]\s*)?" + _HEDGED + r"(?:in\s+)?" + _WITHIN
    + r"(?P<name>(?:[A-Z][\w'.-]*\s*){1,5})(?=[.!,;()\n]|$)"
)
# An answer that is nothing but a name ("Kenya", "Nigeria (Lagos)"), not one that opens with a word that
# happens to be a place ("Temple, mosque and market suggest Turkey").
_WHOLE_ANSWER = re.compile(r"\s*" + _HEDGED + _WITHIN + r"(?P<name>(?:[A-Z][\w'.-]*\s*){1,5}?)\s*[.!]?\s*(?:\(|\n|$)")
# The whole answer "Country, City" ("Japan, Osaka"), the other order.
_COUNTRY_FIRST = re.compile(r"\s*(?P<country>[A-Z][^,\n]{1,40}?)\s*,\s*(?P<city>[A-Z][^,\n]{1,40}?)\s*[.!]?\s*$")


def names_alone(text: str, markers: list[int]) -> list[Named]:
    """A country or city named alone where an answer stands: the whole answer ("Kenya"), after a
    final-answer marker ("Best guess: Nairobi") or after "this is" ("so this is Paris.")."""
    matches = [(_WHOLE_ANSWER.match(text), 0)]
    starts = {match.end(): 0 for match in _LEAD_IN.finditer(text)} | dict.fromkeys(markers, 0)
    starts |= {match.end(): _LARGE_CITY for match in _TAKEN_IN.finditer(text)}
    matches += [(_NAME_ALONE.match(text, start), population) for start, population in sorted(starts.items())]
    found = []
    reversed_order = _COUNTRY_FIRST.match(text)
    if reversed_order and is_country(reversed_order["country"]) and not is_country(reversed_order["city"]):
        city = reversed_order["city"] if is_city(reversed_order["city"], reversed_order["country"]) else ""
        found.append(Named(reversed_order.start(), city, reversed_order["country"]))
    for match, population in matches:
        if match is None:
            continue
        name = _strip_value(match["name"])
        if is_country(name) and (len(name) > 3 or name.isupper()):  # "No." is no Norway
            found.append(Named(match.start("name"), "", name))
        elif is_city_named(name, population):
            found.append(Named(match.start("name"), name, ""))
        else:
            found += [Named(match.start("name"), *pair) for pair in _city_then_country(name)]
    return found


def _city_then_country(name: str) -> list[tuple[str, str]]:
    """ "Paris France" -> [("Paris", "France")]: a city of the country its last words name, no comma between."""
    words = name.split()
    for split in range(len(words) - 1, 0, -1):
        city, country = " ".join(words[:split]), " ".join(words[split:])
        if is_country(country) and is_city(city, country):
            return [(city, country)]
    return []


def _covered(named: Named, places: list[Named]) -> bool:
    return any(name_key(other.country) == name_key(named.country) for other in places)


def _countries_in(offset: int, sentence: str) -> Iterator[Named]:
    """ "…in Kenya." -> "Kenya": a capitalised country name after "in", not one item of a list."""
    for match in _IN_COUNTRY.finditer(sentence):
        country = _country_prefix(match[1], countries_only=True)
        if country is None or _NEGATED.search(sentence, 0, match.start()):
            continue
        end = match.start(1) + match[1].find(country) + len(country)
        after = _LIST_AFTER.match(sentence, end)
        if after and _country_prefix(sentence[after.end() :], countries_only=True):
            continue  # "in Italy, Greece, or possibly southern France"
        city = _city_before(sentence[: match.start()], country)
        yield Named(offset + match.start(1), city, re.sub(r"(?i)^the\s+", "", country))


def _city_before(head: str, country: str) -> str:
    """The city named just before "in <Country>" ("the city of Porto in Portugal"), or ""."""
    words = _name_tail(head)
    for start in range(len(words)):
        candidate = " ".join(words[start:])
        if is_city(candidate, country):
            return candidate
    return ""
