"""Reading locations out of model answers (`gaea.geo.parse_location`) and JSON out of model text
(`gaea.jsontext`): every real answer of ../shared/data/answers, and each form real answers take in a test
of its own (answers written here in the shapes the real ones have, none copied from the shared file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaea import geo
from gaea.jsontext import find_json, json_values, last_object_with

# ------------------------------------------------------------------------------------------ the real answers


def _answers(shared_data: Path) -> list[dict]:
    path = shared_data / "answers" / "location_inference_answers.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_real_answer_is_read_as_a_careful_reader_reads_it(shared_data: Path) -> None:
    """Coordinates within 1 km of the hand-read ones where an answer states them, no location where it
    states none, and place-only answers within 25 km of the named place. No exceptions are needed."""
    rows = _answers(shared_data)
    stated = [row for row in rows if row["expected_lat"] is not None]
    place_only = [row for row in rows if row["expected_lat"] is None and row["expected_place"]]
    nothing = [row for row in rows if row["expected_lat"] is None and not row["expected_place"]]
    assert (len(rows), len(stated), len(place_only), len(nothing)) == (124, 97, 2, 25)

    wrong = []
    for row in stated:
        parsed = geo.parse_location(row["text"])
        if parsed.point is None or parsed.method not in ("json", "coordinates"):
            wrong.append((row["id"], "no coordinates", parsed))
        elif geo.haversine_km(parsed.lat, parsed.lon, row["expected_lat"], row["expected_lon"]) > 1.0:
            wrong.append((row["id"], "coordinates off", parsed))
    for row in place_only:
        parsed, named = geo.parse_location(row["text"]), geo.geocode(row["expected_place"])
        if parsed.point is None or geo.haversine_km(parsed.lat, parsed.lon, named.lat, named.lon) > 25.0:
            wrong.append((row["id"], "place missed", parsed))
    for row in nothing:
        parsed = geo.parse_location(row["text"])
        if parsed.point is not None or not parsed.reason:
            wrong.append((row["id"], "invented a location", parsed))
    assert wrong == []


def test_the_sign_conflict_of_the_real_answers_is_decided_and_reported(shared_data: Path) -> None:
    conflicted = [row for row in _answers(shared_data) if "sign_conflict" in row["forms"]]
    assert conflicted
    for row in conflicted:
        parsed = geo.parse_location(row["text"])
        assert (parsed.lat, parsed.lon) == pytest.approx((row["expected_lat"], row["expected_lon"]), abs=1e-6)
        assert parsed.sign_source in ("country", "hemisphere")


# ------------------------------------------------------------------------------------------ each form

REASONING = (
    "Let me work through the clues. The script on the shop signs is Portuguese, which points to Portugal or "
    "Brazil. The tiles (azulejos) are typical of Lisbon, Portugal, but the hills and the river suggest the "
    "north.\n\n"
)


def _read(text: str) -> geo.ParsedLocation:
    return geo.parse_location(text)


def _at(parsed: geo.ParsedLocation, lat: float, lon: float, km: float = 1.0) -> bool:
    return parsed.point is not None and geo.haversine_km(parsed.lat, parsed.lon, lat, lon) <= km


def test_reasoning_first_the_final_answer_wins() -> None:
    answer = '{"lat": 41.1496, "lon": -8.6109, "city": "Porto", "country": "Portugal"}'
    parsed = _read(REASONING + "My final answer:\n" + answer)
    assert (parsed.method, parsed.city, parsed.country) == ("json", "Porto", "Portugal")
    assert _at(parsed, 41.1496, -8.6109)


def test_reasoning_first_places_mentioned_while_reasoning_are_not_the_answer() -> None:
    parsed = _read(REASONING + "So my best guess is Porto, Portugal.")
    assert (parsed.method, parsed.city, parsed.country) == ("place", "Porto", "Portugal")
    assert _at(parsed, 41.15, -8.61, km=5)


def test_coordinates_mentioned_while_reasoning_are_not_the_answer() -> None:
    text = "Lisbon (38.72, -9.14) has such trams, but the skyline is Porto's. Final answer: 41.1496, -8.6109."
    assert _at(_read(text), 41.1496, -8.6109)


def test_a_final_answer_in_prose_after_the_json_revises_it() -> None:
    text = (
        '{"lat": 48.8566, "lon": 2.3522, "city": "Paris", "country": "France"}\n'
        "On second thought the trams are Lyon's. My final answer: 45.7640, 4.8357 (Lyon, France)."
    )
    parsed = _read(text)
    assert (parsed.method, parsed.city, parsed.country) == ("coordinates", "Lyon", "France")
    assert _at(parsed, 45.764, 4.8357)


def test_prose_restating_the_json_leaves_the_json_answer() -> None:
    parsed = _read('{"lat": 48.8566, "lon": 2.3522, "city": "Paris"}\nTherefore 48.86° N, 2.35° E fits the skyline.')
    assert (parsed.method, parsed.city) == ("json", "Paris")


def test_answer_first_then_reasoning() -> None:
    text = (
        '```json\n{"lat": -1.2921, "long": 36.8219, "city": "Nairobi", "country": "Kenya"}\n```\n\n'
        "**Reasoning:** the matatus and the red soil are typical of Kenya. The coordinates above, 1.2921° S "
        "and 36.8219° E, are the city centre."
    )
    parsed = _read(text)
    assert (parsed.method, parsed.city, parsed.sign_source) == ("json", "Nairobi", "")
    assert _at(parsed, -1.2921, 36.8219)


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"latitude": 35.6762, "longitude": 139.6503}\n```',
        'Here it is: {"lat": 35.6762, "lng": 139.6503} (Shinjuku).',
        '{"answer": {"reverse_geocoding": {"coordinates": {"lat": 35.6762, "long": 139.6503}}}}',
        '{"lat": "35.6762", "lon": "139.6503", "city": "Tokyo"}',
        '{"Latitude": 35.6762, "Longitude": 139.6503, "heading": 90, "pitch": 0, "zoom": 2}',
        '{"predicted_lat": 35.6762, "predicted_lon": 139.6503}',
        "```\n[{\"lat\": 35.6762, \"lon\": 139.6503}]\n```",
    ],
    ids=["fenced", "inline", "nested", "string-numbers", "extra-numeric-keys", "prefixed-keys", "fenced-array"],
)
def test_json_forms(text: str) -> None:
    parsed = _read(text)
    assert parsed.method == "json"
    assert _at(parsed, 35.6762, 139.6503)


@pytest.mark.parametrize(
    ("text", "city", "country"),
    [
        ('{"lat": 37.7749, "long": -122.4194, "city": San Francisco, "country": United States}',
         "San Francisco", "United States"),
        ("{'lat': 37.7749, 'long': -122.4194, 'city': 'San Francisco', 'country': 'USA',}", "San Francisco", "USA"),
        ('My answer: {"lat": 37.7749, "long": -122.4194, "city": "San Francisco", "country": "US', "San Francisco", ""),
        ('{\\"\n"lat": 37.7749,\\*\n*   "long": -122.4194,\\*\n    city: "San Francisco"}', "San Francisco", ""),
    ],
    ids=["unquoted-values", "python-dict-trailing-comma", "cut-off-reply", "markdown-escapes"],
)
def test_json_that_is_not_quite_json(text: str, city: str, country: str) -> None:
    parsed = _read(text)
    assert parsed.method == "json" and parsed.city == city
    assert _at(parsed, 37.7749, -122.4194)


@pytest.mark.parametrize(
    ("text", "lat", "lon"),
    [
        ("around 33.9249° S, 18.4241° E, in the City Bowl", -33.9249, 18.4241),
        ("It is at 19.4326° N, -99.1332° W.", 19.4326, -99.1332),
        ("located at roughly 40°26'46\"N 79°58'56\"W", 40 + 26 / 60 + 46 / 3600, -(79 + 58 / 60 + 56 / 3600)),
        ("about 51° 30.4' N, 0° 7.6' W", 51 + 30.4 / 60, -7.6 / 60),
        ("The coordinates are 48.8566Â° N, 2.3522Â° E.", 48.8566, 2.3522),
        ("N 64.1466, W 21.9426", 64.1466, -21.9426),
        ("latitude −34.6037, longitude –58.3816", -34.6037, -58.3816),
        ("Latitud: 40.4168, Longitud: -3.7038", 40.4168, -3.7038),
        ('Final answer:\n"lat": 40.4168, "lon": -3.7038, "city": "Madrid"', 40.4168, -3.7038),
        ("Latitude 35 degrees 41 minutes North, longitude 139 degrees 41 minutes East", 35 + 41 / 60, 139 + 41 / 60),
    ],
    ids=["hemisphere-letters", "letter-and-minus", "dms", "degrees-decimal-minutes", "mojibake-degree",
         "letters-before", "unicode-minus-and-dash", "spanish-labels", "json-keys-without-braces",
         "minutes-in-words"],
)  # fmt: skip
def test_prose_coordinate_forms(text: str, lat: float, lon: float) -> None:
    parsed = _read(text)
    assert parsed.method == "coordinates"
    assert parsed.lat == pytest.approx(lat, abs=1e-6) and parsed.lon == pytest.approx(lon, abs=1e-6)


def test_mojibake_in_names_is_repaired() -> None:
    parsed = _read('{"lat": -23.55, "lon": -46.63, "city": "SÃ£o Paulo", "country": "Brasil"}')
    assert parsed.city == "São Paulo"


def test_sign_conflict_the_named_country_decides() -> None:
    # The JSON drops the minus sign, the prose letters it: Montevideo lies south and west.
    text = (
        "The bus livery and the rambla suggest Montevideo, at approximately 34.9011° S, 56.1645° W.\n\n"
        '```json\n{"lat": 34.9011, "long": 56.1645, "city": "Montevideo", "country": "Uruguay"}\n```'
    )
    parsed = _read(text)
    assert (parsed.method, parsed.sign_source) == ("json", "country")
    assert _at(parsed, -34.9011, -56.1645)


def test_sign_conflict_the_named_country_overrules_a_wrong_letter() -> None:
    text = '{"lat": -33.8688, "lon": 151.2093, "city": "Sydney", "country": "Australia"}\n'
    text += "That is 33.8688° N, 151.2093° E."
    parsed = _read(text)
    assert parsed.sign_source == "country"
    assert _at(parsed, -33.8688, 151.2093)


def test_sign_conflict_without_a_country_the_hemisphere_letter_decides() -> None:
    parsed = _read('{"lat": 41.0082, "lon": -28.9784}\nThat is 41.0082° N, 28.9784° E, near the Bosphorus.')
    assert parsed.sign_source == "hemisphere"
    assert _at(parsed, 41.0082, 28.9784)


@pytest.mark.parametrize(
    "text",
    [
        '{"lat": "Unknown", "long": "Unknown", "city": "Unknown", "country": "Unknown"}',
        '{"lat": "N/A", "lon": "N/A", "city": "N/A", "country": "N/A"}',
        '```json\n{"lat": null, "long": null, "city": null, "country": null}\n```',
        '{"lat": 0, "lon": 0, "city": "", "country": ""}',
        '{"lat": 0.0, "lon": 0.0}',
        '{"city": "Anytown", "country": "Unknown"}',
        '{"lat": "Unable to determine", "long": "Unable to determine", "city": "Generic Town", "country": "Europe"}',
        '{"lat": 45.0, "lon": 5.0, "city": "Unknown", "country": "Unknown"}\nThis is a placeholder for the '
        "coordinates, since the location cannot be determined from the image.",
    ],
    ids=["unknown", "n/a", "null", "zero-zero", "zero-zero-bare", "anytown", "unable", "disowned-values"],
)
def test_placeholders_are_no_location(text: str) -> None:
    parsed = _read(text)
    assert parsed.point is None and parsed.method == "none" and parsed.reason


def test_a_placeholder_city_beside_a_real_country_leaves_the_country() -> None:
    parsed = _read('{"lat": null, "long": null, "city": "Unknown Coastal Town", "country": "Likely Croatia"}')
    assert (parsed.method, parsed.city, parsed.country) == ("place", "", "Croatia")
    assert parsed.place is not None and parsed.place.country_code == "HR"


def test_placeholder_names_beside_stated_coordinates_keep_the_coordinates() -> None:
    parsed = _read('{"lat": 46.2, "long": 6.15, "city": "Suburban City", "country": "Switzerland or France"}')
    assert (parsed.method, parsed.city, parsed.country) == ("json", "", "")
    assert _at(parsed, 46.2, 6.15)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I'm unable to view images directly, but palm trees often grow in Florida, United States.", "cannot see"),
        ("I'm sorry, but I can't help with identifying where a person is from a photo.", "refusal"),
        (
            "The dry scrub suggests Spain, perhaps Andalusia. However, without signs it is impossible to say. "
            "Therefore, I cannot provide coordinates or a city guess.",
            "refusal",
        ),
        ("Error: 429 Too Many Requests. Rate limit reached for requests; retry after 20s.", "error"),
        ('{"error": {"message": "Invalid image data", "type": "invalid_request_error"}}', "error"),
        ("Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'choices'", "error"),
    ],
    ids=["cannot-see", "privacy-refusal", "refusal-after-hints", "rate-limit", "json-error", "traceback"],
)
def test_refusals_and_error_messages_are_no_location(text: str, reason: str) -> None:
    parsed = _read(text)
    assert parsed.point is None and parsed.method == "none"
    assert reason in parsed.reason


def test_a_guess_after_a_refusal_of_precision_stands() -> None:
    parsed = _read("I cannot pinpoint the exact street, but this is almost certainly Valletta, Malta.")
    assert (parsed.method, parsed.city, parsed.country) == ("place", "Valletta", "Malta")


def test_a_place_named_after_a_refusal_stands() -> None:
    parsed = _read("It's impossible to be sure from one photo, but my best guess is Hoi An, Vietnam.")
    assert (parsed.city, parsed.country) == ("Hoi An", "Vietnam")


@pytest.mark.parametrize(
    "text",
    [
        "The sun angle suggests a latitude range of 30°N to 50°N and a longitude range of -10°W to 40°E.",
        "I would estimate the latitude to be around 40-50°N.",
        "The latitude is somewhere between 35° and 45° N.",
    ],
)
def test_ranges_are_no_point(text: str) -> None:
    parsed = _read(text)
    assert parsed.point is None and "range" in parsed.reason


def test_a_range_beside_a_final_answer_does_not_disturb_it() -> None:
    parsed = _read('Probably between 30°N and 50°N.\n\n**Answer:** {"lat": 43.3, "long": 5.37, "city": "Marseille"}')
    assert _at(parsed, 43.3, 5.37)


@pytest.mark.parametrize(
    "text",
    [
        "It could be either Lisbon, Portugal or Porto, Portugal.",
        "Possible locations:\n1. Split, Croatia (43.5081, 16.4402)\n2. Zadar, Croatia (44.1194, 15.2314)",
        "Candidates: Quito, Ecuador; Cusco, Peru; La Paz, Bolivia.",
        "1. Lisbon (38.7223, -9.1393) - 60%\n2. Porto (41.1579, -8.6291) - 30%",
        '[{"city": "Lisbon", "lat": 38.72, "lon": -9.14, "p": 0.6}, {"city": "Porto", "lat": 41.15, "lon": -8.61}]',
    ],
)
def test_candidate_lists_without_a_final_choice_are_no_location(text: str) -> None:
    parsed = _read(text)
    assert parsed.point is None and "no final choice" in parsed.reason


def test_a_candidate_list_with_a_final_choice_gives_the_choice() -> None:
    text = "Possible locations:\n1. Split, Croatia\n2. Zadar, Croatia\n\nFinal answer: Zadar, Croatia"
    parsed = _read(text)
    assert (parsed.city, parsed.country) == ("Zadar", "Croatia")


@pytest.mark.parametrize(
    ("text", "lat", "lon", "code"),
    [
        ("This photo was taken at the Treasury in Petra, Jordan.", 30.32, 35.48, "JO"),
        ("Kansas City, Missouri", 39.10, -94.58, "US"),
        ("Kansas City, Kansas", 39.11, -94.63, "US"),
        ("Based on the matatus, this is Kenya.", -1.28, 36.82, "KE"),
        ("Kenya", -1.28, 36.82, "KE"),
        ("Answer: Kyoto", 35.02, 135.75, "JP"),
        ("I think it's the city of Porto in Portugal.", 41.15, -8.61, "PT"),
        ("São Paulo, Brasil", -23.55, -46.64, "BR"),
        ("Kyoto Japan", 35.02, 135.75, "JP"),
        ("The photo was taken in Hanoi.", 21.02, 105.84, "VN"),
        ("Location: Sydney Opera House, Sydney, NSW, Australia", -33.87, 151.21, "AU"),
        ("This appears to be in Bavaria, Germany.", 52.52, 13.41, "DE"),
        ("Nigeria (Lagos)", 9.06, 7.50, "NG"),
        ("paris, france", 48.85, 2.35, "FR"),
        ("Japan, Osaka", 34.69, 135.50, "JP"),
        ("This is not Paris, France; it is Brussels, Belgium.", 50.85, 4.35, "BE"),
        ("Probably San Francisco, California.", 37.77, -122.42, "US"),
        ("My best guess: somewhere in rural Kenya.", -1.28, 36.82, "KE"),
        ("It was taken in north-eastern Brazil.", -15.78, -47.93, "BR"),
        ("It is in South Africa.", -25.74, 28.19, "ZA"),
        ("This photo was likely taken in a rural part of Kenya.", -1.28, 36.82, "KE"),
        ("I believe this is somewhere in the countryside of Kenya.", -1.28, 36.82, "KE"),
        ("This looks like rural Kenya.", -1.28, 36.82, "KE"),
        ("Best guess: rural Kenya", -1.28, 36.82, "KE"),
        ("Probably Kenya.", -1.28, 36.82, "KE"),
        ("Most likely: Kenya (rural area).", -1.28, 36.82, "KE"),
    ],
    ids=["petra", "kansas-city-mo", "kansas-city-ks", "country-after-is", "country-alone", "city-after-marker",
         "city-in-country", "endonym", "no-comma", "taken-in-city", "landmark-then-city", "region-country",
         "country-then-bracket", "lower-case", "country-first", "negated-then-answer",
         "city-region", "in-rural-country", "in-part-of-country", "capitalised-compass-word-is-the-name",
         "in-a-part-of-country", "in-the-countryside-of", "lead-in-then-rural", "marker-then-rural", "hedged-alone",
         "hedge-with-colon"],
)  # fmt: skip
def test_place_only_answers_are_geocoded_offline_to_the_right_place(text: str, lat: float, lon: float, code: str):
    parsed = _read(text)
    assert parsed.method == "place" and parsed.place is not None
    assert parsed.place.country_code == code
    assert _at(parsed, lat, lon, km=25)


@pytest.mark.parametrize("text", ["Temple, mosque and market suggest a Muslim country.", "No.", "Mexico, Panama"])
def test_words_that_happen_to_be_places_are_no_answer(text: str) -> None:
    assert _read(text).point is None


def test_a_negated_country_is_no_answer() -> None:
    assert _read("It is definitely not in the United States.").point is None


def test_every_reading_says_how_it_was_read_and_why_it_refused() -> None:
    assert _read('{"lat": 1.5, "lon": 2.5}').method == "json"
    assert _read("1.5000, 2.5000").method == "coordinates"
    assert _read("Lagos, Nigeria").method == "place"
    nothing = _read("A quiet street with trees.")
    assert (nothing.method, nothing.reason) == ("none", "names no location")
    unknown = _read('{"city": "Qwxzzy", "country": "Narnia"}')
    assert unknown.method == "none" and "gazetteer" in unknown.reason
    assert _read("").reason == "empty answer"


# ------------------------------------------------------------------------------------------ gaea.jsontext


def test_json_is_found_fenced_inline_and_nested_in_order() -> None:
    text = 'First {"a": 1}, then\n```json\n{"b": {"c": [1, 2]}}\n```\nand last {"d": "x}y"}.'
    assert json_values(text) == [{"a": 1}, {"b": {"c": [1, 2]}}, {"d": "x}y"}]
    spans = find_json(text)
    assert [text[span.start : span.end] for span in spans][0] == '{"a": 1}'


def test_lenient_reading_repairs_what_json_refuses_and_strict_does_not() -> None:
    text = 'Verdict: {"score": 7, "reason": unquoted words,} and {"score": 8}'
    assert json_values(text) == [{"score": 7, "reason": "unquoted words"}, {"score": 8}]
    assert json_values(text, strict=True) == [{"score": 8}]
    assert find_json(text)[0].repaired and not find_json(text)[1].repaired


def test_the_last_object_with_the_keys_is_the_final_one() -> None:
    text = 'Draft {"score": 3} ... revised: {"score": 9, "note": "x"}'
    assert last_object_with(text, ("score",)) == {"score": 9, "note": "x"}
    assert last_object_with(text, ("missing",)) is None


def test_an_inline_array_of_objects_is_one_value() -> None:
    assert json_values('Top two: [{"a": 1}, {"a": 2}] and [1, 2] (no array of objects)') == [[{"a": 1}, {"a": 2}]]


def test_prose_in_braces_is_not_json() -> None:
    assert json_values("Use the {city} placeholder, then {} and {text here}.") == []


def test_a_stray_brace_does_not_hide_the_json_after_it() -> None:
    assert json_values('Smiley :-{ and then {"lat": 1.5, "lon": 2.5}') == [{"lat": 1.5, "lon": 2.5}]


@pytest.mark.parametrize("text", ["{" * 5000, "[" * 5000 + "]" * 5000, "{'a': " * 300, "```json\n{broken\n```", None])
def test_jsontext_never_raises(text: object) -> None:
    assert isinstance(json_values(text), list)  # type: ignore[arg-type]
