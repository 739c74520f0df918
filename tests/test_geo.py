"""gaea.geo: distances and metrics, answer parsing, offline (reverse) geocoding, on the real data in ../shared/data."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from geopy.distance import geodesic

from gaea import geo
from gaea.errors import BadInputError
from gaea.types import GeoPoint

# ------------------------------------------------------------------------------------------ real data


def _benchmark_pairs(path: Path) -> np.ndarray:
    """Consecutive rows of a benchmark CSV paired up: an array of shape (n, 2, 2) of (lat, lon)."""
    with open(path, newline="") as handle:
        rows = [(float(row["LAT"]), float(row["LON"])) for row in csv.DictReader(handle) if row["LAT"].strip()]
    points = np.array(rows[: len(rows) // 2 * 2])
    return points.reshape(-1, 2, 2)


def _photo_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "photos" / "expected_gps.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["lat"]]


# ------------------------------------------------------------------------------------------ haversine


@pytest.mark.parametrize("name", ["im2gps3k_latlon.csv", "yfcc4k_latlon.csv"])
def test_haversine_agrees_with_geodesic_on_benchmark_coordinates(shared_data: Path, name: str) -> None:
    pairs = _benchmark_pairs(shared_data / "benchmarks" / name)
    assert len(pairs) > 1000
    ours = geo.haversine_km(pairs[:, 0, 0], pairs[:, 0, 1], pairs[:, 1, 0], pairs[:, 1, 1])
    reference = np.array([geodesic(tuple(a), tuple(b)).km for a, b in pairs])
    error = np.abs(ours - reference)
    moved = reference > 0
    relative = error[moved] / reference[moved]
    # A sphere of the mean radius is within 0.5% of WGS84 for almost every pair; the worst case, short
    # north-south paths near the equator (meridian radius 6335 km), is 0.56%.
    assert np.mean(relative <= 0.005) >= 0.99
    assert relative.max() <= 0.0057
    assert np.all(error[~moved] < 1e-9)


def test_haversine_broadcasts_and_matches_scalar_calls(shared_data: Path) -> None:
    pairs = _benchmark_pairs(shared_data / "benchmarks" / "yfcc4k_latlon.csv")[:50]
    vectorised = geo.haversine_km(pairs[:, 0, 0], pairs[:, 0, 1], pairs[:, 1, 0], pairs[:, 1, 1])
    scalars = [geo.haversine_km(*a, *b) for a, b in pairs]
    assert isinstance(scalars[0], float)
    np.testing.assert_allclose(vectorised, scalars, rtol=1e-12)
    one_to_many = geo.haversine_km(43.4674, 11.8851, pairs[:, 1, 0], pairs[:, 1, 1])
    assert one_to_many.shape == (50,)
    np.testing.assert_allclose(one_to_many[3], geo.haversine_km(43.4674, 11.8851, *pairs[3, 1]))


def test_haversine_known_values() -> None:
    assert geo.haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088)
    assert geo.haversine_km(90, 0, -90, 0) == pytest.approx(math.pi * 6371.0088)
    assert geo.haversine_km(43.4674, 11.8851, 43.4674, 11.8851) == 0.0
    # One degree of longitude on the equator.
    assert geo.haversine_km(0, 0, 0, 1) == pytest.approx(2 * math.pi * 6371.0088 / 360)
    assert math.isnan(geo.haversine_km(float("nan"), 0, 0, 0))
    arezzo, nakuru = GeoPoint(43.4674, 11.8851), GeoPoint(-0.3713, 36.0564)
    assert geo.distance_km(arezzo, nakuru) == pytest.approx(
        geodesic((43.4674, 11.8851), (-0.3713, 36.0564)).km, rel=0.005
    )


# ------------------------------------------------------------------------------------------ metrics


def test_accuracy_at_counts_missing_predictions_as_misses() -> None:
    distances = [0.5, 10.0, 150.0, 700.0, 2000.0, 3000.0, float("nan"), None]
    assert geo.accuracy_at(distances) == {
        "1km": 12.5,
        "25km": 25.0,
        "200km": 37.5,
        "750km": 50.0,
        "2500km": 62.5,
    }


def test_accuracy_at_threshold_is_inclusive_and_custom_thresholds_work() -> None:
    assert geo.accuracy_at([25.0, 25.001], thresholds=(25,)) == {"25km": 50.0}
    assert geo.accuracy_at(np.array([0.2, 0.7]), thresholds=(0.5, 1)) == {"0.5km": 50.0, "1km": 100.0}
    assert geo.THRESHOLDS_KM == (1, 25, 200, 750, 2500)


def test_median_error_treats_missing_as_infinite() -> None:
    assert geo.median_error_km([1.0, 2.0, 3.0]) == 2.0
    assert geo.median_error_km([1.0, 2.0, 3.0, float("nan")]) == 2.5
    assert geo.median_error_km([1.0, float("nan"), 3.0]) == 3.0
    assert geo.median_error_km([1.0, None]) == math.inf
    assert geo.median_error_km([float("nan")] * 3) == math.inf


def test_geoscore() -> None:
    assert geo.geoscore(0.0) == 5000.0
    assert geo.geoscore(1492.7) == pytest.approx(5000.0 / math.e)
    assert geo.geoscore(float("nan")) == 0.0
    scores = geo.geoscore(np.array([0.0, 100.0, np.nan, 20000.0]))
    np.testing.assert_allclose(
        scores, [5000.0, 5000.0 * math.exp(-100 / 1492.7), 0.0, 5000.0 * math.exp(-20000 / 1492.7)]
    )
    assert np.all(np.diff(scores[[0, 1, 3]]) < 0)


@pytest.mark.parametrize("bad", [[], [1.0, -3.0], ["far"]])
def test_metrics_reject_bad_distances(bad: list) -> None:
    with pytest.raises(BadInputError):
        geo.accuracy_at(bad)
    with pytest.raises(BadInputError):
        geo.median_error_km(bad)


# ------------------------------------------------------------------------------------------ parsing coordinates

DMS_LAT = 43 + 28 / 60 + 2.8 / 3600
DMS_LON = 11 + 53 / 60 + 6.5 / 3600

COORDINATE_FORMS = [
    ("43.467, 11.885", 43.467, 11.885),
    ("(43.467, 11.885)", 43.467, 11.885),
    ("[43.467,11.885]", 43.467, 11.885),
    ("The photo was taken at -33.8688, 151.2093.", -33.8688, 151.2093),
    ("43.4674 11.8851", 43.4674, 11.8851),
    ("lat: 43.4 lon: 11.8", 43.4, 11.8),
    ("lat=43.4, lng=11.8", 43.4, 11.8),
    ("Longitude: 11.8851, Latitude: 43.4674", 43.4674, 11.8851),
    ("Latitude: -0.3713\nLongitude: 36.0564", -0.3713, 36.0564),
    ("**Latitude:** 43.4674\n**Longitude:** 11.8851", 43.4674, 11.8851),
    ("latitude −0.3713, longitude 36.0564", -0.3713, 36.0564),
    ("Latitude 43.4674° N, Longitude 11.8851° E", 43.4674, 11.8851),
    ("43.4674N 11.8851E", 43.4674, 11.8851),
    ("0.3713° S, 36.0564° E", -0.3713, 36.0564),
    ("40.7484° N, 73.9857° W", 40.7484, -73.9857),
    ("11.8851° E, 43.4674° N", 43.4674, 11.8851),
    ("N 43.4674, E 11.8851", 43.4674, 11.8851),
    ("43.4674 degrees North, 11.8851 degrees East", 43.4674, 11.8851),
    ("43°28'02.8\"N 11°53'06.5\"E", DMS_LAT, DMS_LON),
    ("43°28′02.8″N 11°53′06.5″E", DMS_LAT, DMS_LON),
    ("43° 28' 02.8\" N, 11° 53' 06.5\" E", DMS_LAT, DMS_LON),
    ("43°28'02.8''N 11°53'06.5''E", DMS_LAT, DMS_LON),
    ("0°22'16.7\"S 36°03'23.1\"E", -(22 / 60 + 16.7 / 3600), 36 + 3 / 60 + 23.1 / 3600),
    ("43° 28.05' N, 11° 53.11' E", 43 + 28.05 / 60, 11 + 53.11 / 60),
    ("lat/lon: 43.4, 11.8", 43.4, 11.8),
    ("(lon, lat) = (11.8, 43.4)", 43.4, 11.8),
    ('{"latitude": 43.4, "longitude": 11.8}', 43.4, 11.8),
    ('{"lat": "43.4", "lng": "11.8"}', 43.4, 11.8),
    ('{"Lat": 43.4, "Lon": 11.8, "confidence": 0.7}', 43.4, 11.8),
    ('{"latitude": "43.4674° N", "longitude": "11.8851° E"}', 43.4674, 11.8851),
    ("{'lat': 43.4, 'lon': 11.8}", 43.4, 11.8),
    ('Here is my answer:\n```json\n{"lat": 43.4, "lon": 11.8, "city": "Arezzo"}\n```\nHope it helps.', 43.4, 11.8),
    ('I reasoned about the towers. {"location": {"lat": 1.5, "lon": 2.5}} is my guess.', 1.5, 2.5),
    ('{"type": "Point", "coordinates": [11.88, 43.46]}', 43.46, 11.88),
    ('{"geometry": {"coordinates": [36.0564, -0.3713]}}', -0.3713, 36.0564),
    ('{"coordinates": [43.46, 11.88]}', 43.46, 11.88),
    ('{"coordinates": "43.4674N, 11.8851E"}', 43.4674, 11.8851),
    ("It might be Florence (43.77, 11.25). Final answer: 43.46, 11.88", 43.46, 11.88),
    ("Coordinates: 48.9, 2.3", 48.9, 2.3),
    ("Paris (48.9, 2.3)", 48.9, 2.3),
]


@pytest.mark.parametrize(("text", "lat", "lon"), COORDINATE_FORMS)
def test_parse_coordinates_forms(text: str, lat: float, lon: float) -> None:
    point = geo.parse_coordinates(text)
    assert point is not None, text
    assert point.lat == pytest.approx(lat, abs=1e-6)
    assert point.lon == pytest.approx(lon, abs=1e-6)


def test_enough_answer_forms_are_covered() -> None:
    assert len(COORDINATE_FORMS) >= 25


NOT_COORDINATES = [
    "",
    "   ",
    "I cannot tell where this photo was taken.",
    "In 2019 I visited this place, and in 2021 again.",
    "The years 1998, 2005 were good.",
    "It is about 12.5, 5.6 km away from the station.",
    "(95.0, 20.0)",
    "43.5, 200.25",
    "lat 91.5 lon 11.0",
    "43°75'00\"N 11°53'06.5\"E",
    "Population 45000, area 12 square km.",
    "Version 3.10 of the app",
    "43.4674N and nothing else",
    '{"latitude": 143.4, "longitude": 11.8}',
    '{"lat": true, "lon": 11.8}',
    "It's Arezzo, Italy.",
    "There are 3 cars. Scores: 4.5, 3.8 and 2.1.",
    "The building is 12.5 m tall, 3.25, 4.75 m wide.",
]


@pytest.mark.parametrize("text", NOT_COORDINATES)
def test_parse_coordinates_finds_nothing_where_there_is_none(text: str) -> None:
    assert geo.parse_coordinates(text) is None


# ------------------------------------------------------------------------------------------ parsing places

PLACE_FORMS = [
    ("Arezzo, Italy", ("Arezzo", "Italy")),
    ("It's Arezzo, Italy.", ("Arezzo", "Italy")),
    ("This photo was taken in Arezzo, Italy, judging by the architecture.", ("Arezzo", "Italy")),
    ("City: Arezzo\nCountry: Italy", ("Arezzo", "Italy")),
    ("**City:** Arezzo, **Country:** Italy", ("Arezzo", "Italy")),
    ('{"city": "Arezzo", "country": "Italy"}', ("Arezzo", "Italy")),
    ('```json\n{"answer": {"City": "Nakuru", "Country": "Kenya"}}\n```', ("Nakuru", "Kenya")),
    ('{"location": "Gummersbach, Germany"}', ("Gummersbach", "Germany")),
    ("I think this is Paris, Île-de-France, France.", ("Paris", "France")),
    ("Kirchberg an der Iller, Germany is my guess", ("Kirchberg an der Iller", "Germany")),
    ("The photo shows Nakuru, Kenya", ("Nakuru", "Kenya")),
    ("Answer: Arezzo, IT", ("Arezzo", "IT")),
    ("Oakland, USA", ("Oakland", "USA")),
    ("São Paulo, Brasil", ("São Paulo", "Brasil")),
    ("This was taken somewhere in Kenya.", ("", "Kenya")),
    ("Answer: St. Petersburg, Russia", ("St. Petersburg", "Russia")),
    ("The Hague, Netherlands", ("The Hague", "Netherlands")),
    ("Probably San Francisco, California.", ("San Francisco", "United States")),
    ("Sydney (-33.8688, 151.2093), Australia", ("Sydney", "Australia")),
]


@pytest.mark.parametrize(("text", "expected"), PLACE_FORMS)
def test_parse_place_forms(text: str, expected: tuple[str, str]) -> None:
    assert geo.parse_place(text) == expected


@pytest.mark.parametrize("text", ["", "Hello, world", "Yes, it is nice.", "No idea at all.", "43.46, 11.88"])
def test_parse_place_finds_nothing_where_there_is_none(text: str) -> None:
    assert geo.parse_place(text) is None


def test_parse_location_methods() -> None:
    from_json = geo.parse_location('{"lat": 43.4, "lon": 11.8, "city": "Arezzo", "country": "Italy"}')
    assert (from_json.method, from_json.lat, from_json.lon, from_json.city) == ("json", 43.4, 11.8, "Arezzo")

    prose = geo.parse_location("lat 43.4 lon 11.8. It's Arezzo, Italy")
    assert (prose.method, prose.lat, prose.lon, prose.city, prose.country) == (
        "coordinates",
        43.4,
        11.8,
        "Arezzo",
        "Italy",
    )

    place = geo.parse_location("My guess: Arezzo, Italy.")
    assert place.method == "place" and place.place is not None and place.place.city == "Arezzo"
    assert geo.haversine_km(place.lat, place.lon, 43.46, 11.88) < 5

    country_only = geo.parse_location("It's in Kenya.")
    assert country_only.method == "place" and country_only.place.country_code == "KE" and country_only.city == ""

    nothing = geo.parse_location("I really cannot say.")
    assert (nothing.method, nothing.lat, nothing.point) == ("none", None, None)

    unknown = geo.parse_location('{"city": "Qwxzzy", "country": "Narnia"}')
    assert (unknown.method, unknown.lat, unknown.city, unknown.country) == ("none", None, "Qwxzzy", "Narnia")


@pytest.mark.parametrize(
    "text",
    [
        None,
        42,
        "{" * 5000,
        "[" * 5000 + "]" * 5000,
        "{'a': " * 300,
        "```json\n{broken\n```",
        "°'\"NSEW" * 50,
        "\x00\ud800",
    ],
)
def test_parse_location_never_raises(text: object) -> None:
    parsed = geo.parse_location(text)  # type: ignore[arg-type]
    assert parsed.method in {"json", "coordinates", "place", "none"}


# ------------------------------------------------------------------------------------------ geocoding


def test_geocode_arezzo_italy() -> None:
    place = geo.geocode("Arezzo, Italy")
    assert place is not None
    assert (place.city, place.region, place.country, place.country_code, place.continent) == (
        "Arezzo",
        "Tuscany",
        "Italy",
        "IT",
        "Europe",
    )
    assert geo.haversine_km(place.lat, place.lon, 43.46, 11.88) < 5
    assert place.population > 90_000


@pytest.mark.parametrize(
    ("query", "city", "country_code"),
    [
        ("Arezzo", "Arezzo", "IT"),
        ("arezzo , ITALIA", "Arezzo", "IT"),
        ("Roma", "Rome", "IT"),
        ("München, Deutschland", "Munich", "DE"),
        ("Paris", "Paris", "FR"),
        ("Paris, Texas", "Paris", "US"),
        ("Oakland, CA", "Oakland", "US"),
        ("Nakuru, Kenya", "Nakuru", "KE"),
        ("Gummersbach, Nordrhein-Westfalen, Germany", "Gummersbach", "DE"),
        ("Kirchberg an der Iller, Germany", "Kirchberg an der Iller", "DE"),
        ("Singapore", "Singapore", "SG"),
        ("Italy", "", "IT"),
        ("USA", "", "US"),
        ("Arezzo, France", "", "FR"),
    ],
)
def test_geocode_forms(query: str, city: str, country_code: str) -> None:
    place = geo.geocode(query)
    assert place is not None, query
    assert (place.city, place.country_code) == (city, country_code)


def test_geocode_country_sits_at_its_capital() -> None:
    kenya = geo.geocode("Kenya")
    assert kenya is not None and kenya.city == "" and kenya.country == "Kenya"
    assert geo.haversine_km(kenya.lat, kenya.lon, -1.2864, 36.8172) < 10  # Nairobi


@pytest.mark.parametrize(("query", "code"), [("Tokelau", "TK"), ("Antarctica", "AQ")])
def test_geocode_country_without_large_cities_uses_a_town(query: str, code: str) -> None:
    place = geo.geocode(query)
    assert place is not None and place.country_code == code and place.city == ""
    assert geo.reverse_geocode(place.lat, place.lon).country_code == code


@pytest.mark.parametrize("query", ["", " , ", "Narnia", "Atlantis, Texas", "Qwxzzy, Narnia"])
def test_geocode_unknown_gives_none(query: str) -> None:
    assert geo.geocode(query) is None


def test_reverse_geocode_photo_positions(shared_data: Path) -> None:
    rows = _photo_rows(shared_data)
    assert {row["country_code"] for row in rows} == {"IT", "KE", "DE"}
    for row in rows:
        place = geo.reverse_geocode(float(row["lat"]), float(row["lon"]))
        assert place.country_code == row["country_code"], row["file"]
        assert place.city == row["place"], row["file"]
        assert place.region == row["admin1"], row["file"]
        assert place.distance_km is not None and place.distance_km < 15
    arezzo = geo.reverse_geocode(43.467448, 11.885127)
    assert (arezzo.city, arezzo.country, arezzo.continent) == ("Arezzo", "Italy", "Europe")


def test_reverse_geocode_many_matches_one_by_one(shared_data: Path) -> None:
    rows = _photo_rows(shared_data)
    lats, lons = [float(row["lat"]) for row in rows], [float(row["lon"]) for row in rows]
    one_by_one = [geo.reverse_geocode(lat, lon) for lat, lon in zip(lats, lons, strict=True)]
    assert geo.reverse_geocode_many(lats, lons) == one_by_one
    assert geo.reverse_geocode_many(np.array(lats), np.array(lons))[0].country_code == rows[0]["country_code"]


def test_reverse_geocode_finds_each_geonames_city_in_its_country(shared_data: Path) -> None:
    with open(shared_data / "world" / "geonames_cities15000.csv", newline="") as handle:
        cities = list(csv.DictReader(handle))
    lats = np.array([float(city["latitude"]) for city in cities])
    lons = np.array([float(city["longitude"]) for city in cities])
    places = geo.reverse_geocode_many(lats, lons)
    agree = np.mean([place.country_code == city["countrycode"] for place, city in zip(places, cities, strict=True)])
    near = np.mean([place.distance_km < 2.0 for place in places])
    # Border towns (Frankfurt (Oder) / Słubice) can have a closer neighbour across the border.
    assert agree > 0.995
    assert near > 0.995


def test_reverse_geocode_at_sea_reports_the_distance() -> None:
    place = geo.reverse_geocode(-30.0, -120.0)  # the South Pacific
    assert place.distance_km > 1000


@pytest.mark.parametrize(
    ("lats", "lons", "message"),
    [
        ([10.0, float("nan")], [10.0, 10.0], "index 1"),
        ([95.0], [0.0], "index 0"),
        ([10.0, 20.0], [10.0], "one length"),
        (["north"], [10.0], "must be numbers"),
    ],
)
def test_reverse_geocode_many_rejects_bad_points(lats: list, lons: list, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        geo.reverse_geocode_many(lats, lons)


def test_reverse_geocode_many_of_nothing_is_empty() -> None:
    assert geo.reverse_geocode_many([], []) == []


def test_reverse_geocode_rejects_bad_point() -> None:
    with pytest.raises(BadInputError, match="latitude"):
        geo.reverse_geocode(120.0, 0.0)


def test_importing_geo_loads_no_data_and_starts_no_processes() -> None:
    code = (
        "import sys, multiprocessing\n"
        "import gaea.geo as geo\n"
        "assert 'scipy.spatial' not in sys.modules and geo.gazetteer.__module__ == 'gaea.geo._gazetteer'\n"
        "assert not vars(geo.gazetteer()), 'a table was loaded at import'\n"
        "place = geo.reverse_geocode(43.4674, 11.8851)\n"
        "assert place.city == 'Arezzo'\n"
        "assert multiprocessing.active_children() == []\n"
        "assert 'reverse_geocoder' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------ countries and cities


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Germany", "DE"),
        ("germany", "DE"),
        ("Deutschland", "DE"),
        ("DE", "DE"),
        ("deu", "DE"),
        ("United States of America", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("the United States", "US"),
        ("UK", "GB"),
        ("England", "GB"),
        ("Holland", "NL"),
        ("The Netherlands", "NL"),
        ("Czechia", "CZ"),
        ("Czech Republic", "CZ"),
        ("Côte d'Ivoire", "CI"),
        ("ivory coast", "CI"),
        ("Republic of the Congo", "CG"),
        ("DR Congo", "CD"),
        ("KEN", "KE"),
        ("italia", "IT"),
    ],
)
def test_normalize_country(name: str, code: str) -> None:
    assert geo.normalize_country(name) == code


@pytest.mark.parametrize("name", ["", "Narnia", "Tuscany", "XX", None])
def test_normalize_country_unknown(name: str | None) -> None:
    assert geo.normalize_country(name) is None  # type: ignore[arg-type]


def test_country_info() -> None:
    kenya = geo.country_info("Kenya")
    assert (kenya.iso2, kenya.iso3, kenya.continent, kenya.capital) == ("KE", "KEN", "Africa", "Nairobi")
    assert geo.country_info("deu").name == "Germany"
    assert geo.country_info("JP").continent == "Asia"
    with pytest.raises(BadInputError, match="Narnia"):
        geo.country_info("Narnia")


@pytest.mark.parametrize(
    ("code", "side"),
    [
        ("GB", "left"),
        ("JP", "left"),
        ("KE", "left"),
        ("IT", "right"),
        ("US", "right"),
        ("australia", "left"),
        ("IND", "left"),
        ("DE", "right"),
    ],
)
def test_driving_side(code: str, side: str) -> None:
    assert geo.driving_side(code) == side


def test_driving_side_table_is_complete_and_known() -> None:
    from gaea.geo._gazetteer import LEFT_DRIVING

    assert 70 <= len(LEFT_DRIVING) <= 80
    assert all(geo.normalize_country(code) == code for code in LEFT_DRIVING)
    with pytest.raises(BadInputError):
        geo.driving_side("Narnia")


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [(43.47, 11.88, ("N", "E")), (-0.37, 36.06, ("S", "E")), (40.7, -74.0, ("N", "W")), (-33.9, -70.6, ("S", "W"))],
)
def test_hemispheres(lat: float, lon: float, expected: tuple[str, str]) -> None:
    assert geo.hemispheres(lat, lon) == expected


def test_hemispheres_rejects_bad_points() -> None:
    with pytest.raises(BadInputError):
        geo.hemispheres(91, 0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("New York City", "new york"),
        ("NYC", "New York"),
        ("Roma", "Rome"),
        ("München", "Munich"),
        ("Kiev", "Kyiv"),
        ("Sao Paulo", "São Paulo"),
        ("AREZZO!", "Arezzo, Italy"),
        ("Bombay", "Mumbai"),
    ],
)
def test_normalize_city_aliases_agree(a: str, b: str) -> None:
    assert geo.normalize_city(a) == geo.normalize_city(b)


def test_normalize_city_keys() -> None:
    assert geo.normalize_city("New York City") == "new york"
    assert geo.normalize_city("Roma") == "rome"
    assert geo.normalize_city("  Saint-Étienne ") == "saint etienne"
    assert geo.normalize_city("Unknownville-sur-Mer") == "unknownville sur mer"
    assert geo.normalize_city("Paris") != geo.normalize_city("Rome")
    assert geo.normalize_city("") == ""
