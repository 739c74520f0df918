"""Distance and city / country accuracy of location predictions against a ground-truth CSV.

Accuracy at 1 / 25 / 200 / 750 / 2500 km is counted over ALL ground-truth rows with coordinates: a row
whose prediction is missing or unusable is a miss, as in GAEA and the geolocation literature. The
median error and the mean GeoScore likewise count a missing prediction (median: an infinite error;
GeoScore: 0). Predictions are coordinates, or text ("City, Country", "43.46N 11.88E", JSON) parsed and
geocoded offline by `gaea.geo`. City and country names are compared after normalisation (case, accents,
aliases, ISO codes).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaea import geo
from gaea.errors import BackendError, BackendUnreachableError, BadInputError, NoLocationError

log = logging.getLogger(__name__)

THRESHOLDS_KM = (1, 25, 200, 750, 2500)
_ID_COLUMNS = ("id", "img_id", "image_id", "file", "image")
_LAT_COLUMNS = ("lat", "latitude")
_LON_COLUMNS = ("lon", "longitude", "lng")
_CITY_COLUMNS = ("city", "place")
_COUNTRY_COLUMNS = ("country", "country_code")
_TEXT_COLUMNS = ("prediction",)


@dataclass
class Truth:
    """One ground-truth row; `city` / `country` come from the CSV or, when absent, reverse geocoding."""

    id: str
    lat: float
    lon: float
    city: str = ""
    country: str = ""


@dataclass
class Guess:
    """One prediction, resolved to coordinates where possible; `error` says why a prediction is unusable."""

    id: str
    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""
    text: str = ""
    method: str = ""
    error: str | None = None


def read_truth(path: str | Path) -> list[Truth]:
    """Ground-truth rows with coordinates; rows without (or with impossible) coordinates are logged and left out.

    Raises
    ------
    BadInputError
        When the file is missing, lacks an id / lat / lon column, or repeats an id.
    """
    rows, columns = _read_csv(path, required={"id": _ID_COLUMNS, "lat": _LAT_COLUMNS, "lon": _LON_COLUMNS})
    truths: list[Truth] = []
    seen: set[str] = set()
    without = 0
    for row in rows:
        row_id = row[columns["id"]].strip()
        if row_id in seen:
            raise BadInputError(f"{path}: id {row_id!r} occurs more than once")
        seen.add(row_id)
        point = _point(row.get(columns["lat"]), row.get(columns["lon"]))
        if point is None:
            without += 1
            continue
        city = row.get(columns["city"], "") if "city" in columns else ""
        country = row.get(columns["country"], "") if "country" in columns else ""
        truths.append(Truth(row_id, point[0], point[1], (city or "").strip(), (country or "").strip()))
    if without:
        log.warning("%s: %d row(s) without usable coordinates are not ground truth and were left out", path, without)
    if not truths:
        raise BadInputError(f"{path}: no row has usable coordinates")
    return truths


def read_predictions(path: str | Path) -> dict[str, Guess]:
    """Predictions by id: coordinates from lat / lon columns, else the `prediction` text parsed offline.

    Raises
    ------
    BadInputError
        When the file is missing or has an id column but neither lat / lon nor prediction columns.
    """
    rows, columns = _read_csv(path, required={"id": _ID_COLUMNS})
    has_coordinates = "lat" in columns and "lon" in columns
    if not has_coordinates and "text" not in columns:
        raise BadInputError(f"{path}: needs lat and lon columns or a prediction column")
    guesses: dict[str, Guess] = {}
    for row in rows:
        row_id = row[columns["id"]].strip()
        point = _point(row.get(columns["lat"]), row.get(columns["lon"])) if has_coordinates else None
        text = (row.get(columns["text"]) or "").strip() if "text" in columns else ""
        if point is not None:
            guesses[row_id] = Guess(row_id, point[0], point[1], text=text, method="coordinates")
        else:
            guesses[row_id] = guess_from_text(row_id, text)
    return guesses


def guess_from_text(item_id: str, text: str) -> Guess:
    """A Guess from free text: coordinates or "City, Country" (geocoded offline); unusable text is recorded."""
    if not text.strip():
        return Guess(item_id, error="no prediction")
    parsed = geo.parse_location(text)
    if parsed.lat is not None and parsed.lon is not None:
        return Guess(item_id, parsed.lat, parsed.lon, parsed.city, parsed.country, text, parsed.method)
    return _guess_from_place_name(item_id, text) or Guess(
        item_id, city=parsed.city, country=parsed.country, text=text, error="unparsable: no location"
    )


def _guess_from_place_name(item_id: str, text: str) -> Guess | None:
    """A bare "city, country" cell (any case: "arezzo, it") geocoded as a name, which prose parsing does not do."""
    parts = [part.strip() for part in text.split(",")]
    if not 1 <= len(parts) <= 3 or any(not part or len(part.split()) > 4 for part in parts):
        return None
    place = geo.geocode(text)
    if place is None:
        return None
    return Guess(item_id, place.lat, place.lon, place.city, place.country_code, text, "place")


def evaluate(truths: list[Truth], guesses: dict[str, Guess]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics over all ground-truth rows, and one sample per row.

    Returns
    -------
    (summary, samples)
        summary: ``accuracy`` ({"1km": %, ...}), ``median_km`` (None when half or more rows are misses),
        ``geoscore``, ``city_accuracy``, ``country_accuracy`` (percent), ``counts``; samples: id, truth,
        guess, distance_km, city_match, country_match.
    """
    rows = [(truth, guesses.get(truth.id) or Guess(truth.id, error="no prediction")) for truth in truths]
    distances = np.array([_distance_km(truth, guess) for truth, guess in rows], dtype=float)
    truth_places = _names_filled_in([(truth.city, truth.country, truth.lat, truth.lon) for truth in truths])
    guess_places = _names_filled_in([(guess.city, guess.country, guess.lat, guess.lon) for _, guess in rows])
    samples = [
        _sample(truth, guess, distance, truth_place, guess_place)
        for (truth, guess), distance, truth_place, guess_place in zip(
            rows, distances, truth_places, guess_places, strict=True
        )
    ]
    median = geo.median_error_km(distances)
    summary = {
        "accuracy": geo.accuracy_at(distances, THRESHOLDS_KM),
        "median_km": median if math.isfinite(median) else None,
        "geoscore": float(np.mean(geo.geoscore(distances))),
        "city_accuracy": 100.0 * float(np.mean([sample["city_match"] for sample in samples])),
        "country_accuracy": 100.0 * float(np.mean([sample["country_match"] for sample in samples])),
        "counts": _counts(truths, guesses, distances),
    }
    return summary, samples


def _distance_km(truth: Truth, guess: Guess) -> float:
    if guess.lat is None or guess.lon is None:
        return math.nan
    return float(geo.haversine_km(truth.lat, truth.lon, guess.lat, guess.lon))


def _counts(truths: list[Truth], guesses: dict[str, Guess], distances: np.ndarray) -> dict[str, int]:
    truth_ids = {truth.id for truth in truths}
    return {
        "truth_rows": len(truths),
        "predicted": int(np.sum(~np.isnan(distances))),
        "missing": sum(1 for truth in truths if truth.id not in guesses),
        "unusable": sum(1 for truth in truths if truth.id in guesses and guesses[truth.id].error),
        "predictions_without_truth": sum(1 for guess_id in guesses if guess_id not in truth_ids),
    }


def _names_filled_in(places: list[tuple[str, str, float | None, float | None]]) -> list[tuple[str, str]]:
    """(city, country) of each entry; bare coordinates (no name at all) named by offline reverse geocoding.

    Names given are kept as given: an answer that names only a country is not credited with a city.
    """
    bare = [index for index, (city, country, lat, _) in enumerate(places) if not (city or country) and lat is not None]
    named = [(city, country) for city, country, _, _ in places]
    if bare:
        found = geo.reverse_geocode_many([places[i][2] for i in bare], [places[i][3] for i in bare])
        for index, place in zip(bare, found, strict=True):
            named[index] = (place.city, place.country_code)
    return named


def _sample(
    truth: Truth, guess: Guess, distance: float, truth_place: tuple[str, str], guess_place: tuple[str, str]
) -> dict[str, Any]:
    (truth_city, truth_country), (guess_city, guess_country) = truth_place, guess_place
    country_match = same_country(guess_country, truth_country)
    # Two cities of one name in different countries (Paris, France / Paris, Texas) are not a match.
    city_match = same_city(guess_city, truth_city) and (country_match or not (guess_country and truth_country))
    return {
        "id": truth.id,
        "truth": {"lat": truth.lat, "lon": truth.lon, "city": truth_city, "country": truth_country},
        "guess": asdict(guess) | {"city": guess_city, "country": guess_country},
        "distance_km": None if math.isnan(distance) else distance,
        "country_match": country_match,
        "city_match": city_match,
    }


def same_country(a: str, b: str) -> bool:
    """Whether two country names / codes name one country ("USA" and "United States", "GB" and "UK")."""
    code_a, code_b = geo.normalize_country(a) if a else None, geo.normalize_country(b) if b else None
    return code_a is not None and code_a == code_b


def same_city(a: str, b: str) -> bool:
    """Whether two city names name one city once case, accents and aliases are set aside ("Roma", "Rome")."""
    key_a, key_b = geo.normalize_city(a) if a else "", geo.normalize_city(b) if b else ""
    return bool(key_a) and key_a == key_b


def _point(lat_text: str | None, lon_text: str | None) -> tuple[float, float] | None:
    try:
        lat, lon = float(str(lat_text).strip()), float(str(lon_text).strip())
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def _read_csv(path: str | Path, *, required: dict[str, tuple[str, ...]]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The rows of a CSV and the header naming each role (id, lat, lon, city, country, text), case-insensitively."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such CSV file")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(reader)
    columns = _columns_of(header)
    missing = [role for role in required if role not in columns]
    if missing:
        wanted = "; ".join(f"{role}: one of {', '.join(required[role])}" for role in missing)
        raise BadInputError(f"{path}: missing column(s) ({wanted}); the header is {', '.join(header)}")
    return rows, columns


def _columns_of(header: list[str]) -> dict[str, str]:
    by_lower = {name.strip().lower(): name for name in header}
    roles = {
        "id": _ID_COLUMNS, "lat": _LAT_COLUMNS, "lon": _LON_COLUMNS,
        "city": _CITY_COLUMNS, "country": _COUNTRY_COLUMNS, "text": _TEXT_COLUMNS,
    }  # fmt: skip
    columns: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if name in by_lower:
                columns[role] = by_lower[name]
                break
    return columns


def guess_from_prediction(item_id: str, prediction: Any) -> Guess:
    """A Guess from a `gaea.types.Prediction` (what `Assistant.locate` returns)."""
    if prediction.lat is None or prediction.lon is None:
        return guess_from_text(item_id, prediction.location or prediction.raw)
    return Guess(item_id, prediction.lat, prediction.lon, prediction.city, prediction.country, prediction.raw, "model")


def locate_worker(locate: Callable[[Path], Any], images: dict[str, Path]) -> Callable[[Truth], dict[str, Any]]:
    """The runner's per-item work for `gaea eval geo --images`: locate one photo, keep the guess as a sample."""

    def work(truth: Truth) -> dict[str, Any]:
        image = images.get(truth.id)
        if image is None:
            return asdict(Guess(truth.id, error="no image"))
        try:
            prediction = locate(image)
        except BackendUnreachableError:
            raise
        except (BackendError, BadInputError, NoLocationError) as error:
            return asdict(Guess(truth.id, error=f"model: {error}"))
        return asdict(guess_from_prediction(truth.id, prediction))

    return work


def images_by_id(truths: list[Truth], images_dir: str | Path) -> dict[str, Path]:
    """The photo of each ground-truth id in `images_dir` (ids are file names, with or without a suffix)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise BadInputError(f"{images_dir}: no such directory of images")
    files = {path.name: path for path in images_dir.iterdir() if path.is_file()}
    stems = {path.stem: path for path in files.values()}
    found = {truth.id: files.get(truth.id) or stems.get(truth.id) for truth in truths}
    return {key: path for key, path in found.items() if path is not None}
