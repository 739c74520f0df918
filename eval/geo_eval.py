"""Distance and city / country accuracy of location predictions against a ground-truth CSV.

Accuracy at 1 / 25 / 200 / 750 / 2500 km is counted over ALL ground-truth rows with coordinates: a row
whose prediction is missing or unusable is a miss, as in GAEA and the geolocation literature. The
median error and the mean GeoScore likewise count a missing prediction (median: an infinite error;
GeoScore: 0). Predictions are coordinates, or text ("City, Country", "43.46N 11.88E", JSON) parsed and
geocoded offline by `gaea.geo`.

City and country accuracy are read the way GAEA reads them: the city is the first comma part of the
answer, the country the last ("Paris, France"), compared after offline normalisation (case, accents,
aliases, ISO codes, a misspelling of a name GeoNames does not know, and a country part that names a
place within the true country, as GAEA's judge question "is the prediction within the ground truth?"
allows). Ground-truth files are taken as published: GAEA's (Im2GPS3k / Im2GPS / GWS15k / GeoDE with
coordinates and names; CityGuessr68k and Dollar Street with names only) as well as coordinate-only
benchmark files, whose names come from offline reverse geocoding.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gaea import geo
from gaea.errors import BackendError, BackendUnreachableError, BadInputError
from gaea.images import load_image
from gaea.sources import Row, open_source

log = logging.getLogger(__name__)

THRESHOLDS_KM = (1, 25, 200, 750, 2500)
_ID_COLUMNS = ("id", "img_id", "image_id", "file", "file_path", "file_name", "filename", "image", "path")
_LAT_COLUMNS = ("lat", "latitude")
_LON_COLUMNS = ("lon", "longitude", "lng", "long")
_CITY_COLUMNS = ("city", "city_name", "place")
_COUNTRY_COLUMNS = ("country", "country_name", "country.name", "country_code", "country.id")
_TEXT_COLUMNS = ("prediction", "predicted_answer", "answer")
#: A misspelt name still names the city or country when this close to the true one (difflib ratio).
SPELLING_RATIO = 0.88
_SHORT_ANSWER_CHARS = 120


@dataclass
class Truth:
    """One ground-truth row; `lat` / `lon` are None in a names-only file (CityGuessr, Dollar Street);
    `city` / `country` come from the CSV or, where a file has none, from reverse geocoding."""

    id: str
    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""


@dataclass
class Guess:
    """One prediction, resolved to coordinates where possible; `error` says why a prediction is unusable.

    `answer` is the "City, Country" text that city and country accuracy read (GAEA's comma split).
    """

    id: str
    lat: float | None = None
    lon: float | None = None
    city: str = ""
    country: str = ""
    text: str = ""
    method: str = ""
    error: str | None = None
    answer: str = ""


def read_truth(path: str | Path) -> list[Truth]:
    """Ground-truth rows, from a file with coordinates and / or city and country names.

    Rows of a coordinate file without usable coordinates are logged and left out; a row repeated
    exactly (Dollar Street has one) counts once; names use spaces where a file writes underscores
    (CityGuessr: "Abu_Dhabi").

    Raises
    ------
    BadInputError
        When the file is missing, lacks an id column or both coordinates and names, or gives one id
        two different rows.
    """
    rows, columns = _read_csv(path, required={"id": _ID_COLUMNS})
    has_coordinates = "lat" in columns and "lon" in columns
    if not has_coordinates and not {"city", "country"} & set(columns):
        raise BadInputError(f"{path}: needs lat and lon columns, or city / country columns (or both)")
    truths: list[Truth] = []
    seen: dict[str, dict[str, str]] = {}
    without, repeated = 0, 0
    for row in rows:
        row_id = row[columns["id"]].strip()
        if row_id in seen:
            if seen[row_id] != row:
                raise BadInputError(f"{path}: id {row_id!r} occurs twice with different values")
            repeated += 1
            continue
        seen[row_id] = row
        point = _point(row.get(columns["lat"]), row.get(columns["lon"])) if has_coordinates else None
        if has_coordinates and point is None:
            without += 1
            continue
        lat, lon = point if point is not None else (None, None)
        truths.append(Truth(row_id, lat, lon, _name(row, columns.get("city")), _name(row, columns.get("country"))))
    if without:
        log.warning("%s: %d row(s) without usable coordinates are not ground truth and were left out", path, without)
    if repeated:
        log.warning("%s: %d repeated row(s) counted once", path, repeated)
    if not truths:
        raise BadInputError(f"{path}: no row has usable coordinates")
    return truths


def _name(row: dict[str, str], column: str | None) -> str:
    """A name cell with underscores as spaces; "" for none, or for a dash or other name without letters."""
    name = " ".join((row.get(column) or "").replace("_", " ").split()) if column else ""
    return name if geo.name_key(name) else ""


def read_predictions(path: str | Path) -> dict[str, Guess]:
    """Predictions by id: coordinates from lat / lon columns, else the `prediction` text parsed offline;
    city / country columns, where present, are the answer's names.

    Raises
    ------
    BadInputError
        When the file is missing or has an id column but neither lat / lon, prediction nor city /
        country columns.
    """
    rows, columns = _read_csv(path, required={"id": _ID_COLUMNS})
    has_coordinates = "lat" in columns and "lon" in columns
    has_names = bool({"city", "country"} & set(columns))
    if not (has_coordinates or has_names or "text" in columns):
        raise BadInputError(f"{path}: needs lat and lon columns or a prediction column")
    guesses: dict[str, Guess] = {}
    for row in rows:
        row_id = row[columns["id"]].strip()
        point = _point(row.get(columns["lat"]), row.get(columns["lon"])) if has_coordinates else None
        text = (row.get(columns["text"]) or "").strip() if "text" in columns else ""
        city, country = _name(row, columns.get("city")), _name(row, columns.get("country"))
        named = ", ".join(part for part in (city, country) if part)
        if point is not None:
            guesses[row_id] = Guess(row_id, point[0], point[1], city, country, text, "coordinates", answer=named)
        elif text:
            guesses[row_id] = guess_from_text(row_id, text)
        elif named:
            guesses[row_id] = _guess_from_names(row_id, city, country)
        else:
            guesses[row_id] = Guess(row_id, error=_no_point(row, columns) if has_coordinates else "no prediction")
    return guesses


def _no_point(row: dict[str, str], columns: dict[str, str]) -> str:
    """Why a row's lat / lon cells give no point: empty, or what they hold ("true", "95", "nan")."""
    lat, lon = ((row.get(columns[axis]) or "").strip() for axis in ("lat", "lon"))
    if not lat and not lon:
        return "no prediction"
    return f"no usable coordinates: lat {lat!r}, lon {lon!r} (numbers within -90..90 and -180..180)"


def _guess_from_names(item_id: str, city: str, country: str) -> Guess:
    """A Guess from city / country columns: the names are the answer, geocoded offline for a distance."""
    answer = ", ".join(part for part in (city, country) if part)
    place = _geocode(answer)
    if place is None:
        return Guess(item_id, city=city, country=country, text=answer, method="place", answer=answer)
    return Guess(item_id, place.lat, place.lon, city, country, answer, "place", answer=answer)


@lru_cache(maxsize=65536)
def _geocode(name: str) -> geo.GeoPlace | None:
    return geo.geocode(name)


def guess_from_text(item_id: str, text: str) -> Guess:
    """A Guess from free text: coordinates or "City, Country" (geocoded offline); unusable text is recorded.

    A one-line answer that gives no coordinates is itself the answer GAEA's comma split reads; a longer
    one (reasoning, JSON) is read for the city and country it names.
    """
    if not text.strip():
        return Guess(item_id, error="no prediction")
    parsed = geo.parse_location(text)
    short = "\n" not in text.strip() and len(text) <= _SHORT_ANSWER_CHARS and parsed.method in ("place", "none")
    answer = text.strip() if short else ", ".join(part for part in (parsed.city, parsed.country) if part)
    if parsed.lat is not None and parsed.lon is not None:
        return Guess(item_id, parsed.lat, parsed.lon, parsed.city, parsed.country, text, parsed.method, answer=answer)
    place = _place_of_name(text)
    if place is not None:
        return Guess(item_id, place.lat, place.lon, place.city, place.country_code, text, "place", answer=answer)
    error = f"unparsable: {parsed.reason or 'no location'}"
    return Guess(item_id, city=parsed.city, country=parsed.country, text=text, error=error, answer=answer)


def _place_of_name(text: str) -> geo.GeoPlace | None:
    """A bare "city, country" cell (any case: "arezzo, it") geocoded as a name, which prose parsing does not do."""
    parts = [part.strip() for part in text.split(",")]
    if not 1 <= len(parts) <= 3 or any(not part or len(part.split()) > 4 for part in parts):
        return None
    return _geocode(text)


def answer_parts(answer: str) -> tuple[str, str]:
    """GAEA's reading of an answer: the city is the first comma part, the country the last."""
    parts = answer.split(",")
    return parts[0].strip(), parts[-1].strip()


def evaluate(truths: list[Truth], guesses: dict[str, Guess]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics over all ground-truth rows, and one sample per row.

    Returns
    -------
    (summary, samples)
        summary: ``accuracy`` ({"1km": %, ...}; None values for a names-only file), ``median_km`` (None
        when half or more rows are misses), ``geoscore``, ``city_accuracy`` / ``country_accuracy``
        (percent of the rows whose truth names a city / country; None when none does), ``counts``;
        samples: id, truth, guess, distance_km, city_match, country_match.
    """
    rows = [(truth, guesses.get(truth.id) or Guess(truth.id, error="no prediction")) for truth in truths]
    distances = np.array([_distance_km(truth, guess) for truth, guess in rows], dtype=float)
    truth_names = _truth_names(truths)
    answers = _answers_filled_in([guess for _, guess in rows])
    samples = [
        _sample(truth, guess, distance, names, answer)
        for (truth, guess), distance, names, answer in zip(rows, distances, truth_names, answers, strict=True)
    ]
    located = np.array([truth.lat is not None for truth in truths])
    summary = {**_distance_summary(distances[located]), **_name_summary(samples), "counts": _counts(truths, guesses)}
    summary["counts"]["predicted"] = int(np.sum(~np.isnan(distances)))
    return summary, samples


def _distance_summary(distances: np.ndarray) -> dict[str, Any]:
    """Accuracy, median error and GeoScore over the rows with true coordinates (None for a names-only file)."""
    if not len(distances):
        return {"accuracy": {geo.threshold_key(km): None for km in THRESHOLDS_KM}, "median_km": None, "geoscore": None}
    return geo.distance_summary(distances)


def _name_summary(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    summary: dict[str, float | None] = {}
    for kind in ("city", "country"):
        matches = [sample[f"{kind}_match"] for sample in samples if sample["truth"][kind]]
        summary[f"{kind}_accuracy"] = 100.0 * float(np.mean(matches)) if matches else None
    return summary


def _distance_km(truth: Truth, guess: Guess) -> float:
    if truth.lat is None or truth.lon is None or guess.lat is None or guess.lon is None:
        return math.nan
    return float(geo.haversine_km(truth.lat, truth.lon, guess.lat, guess.lon))


def _counts(truths: list[Truth], guesses: dict[str, Guess]) -> dict[str, int]:
    truth_ids = {truth.id for truth in truths}
    return {
        "truth_rows": len(truths),
        "with_coordinates": sum(truth.lat is not None for truth in truths),
        "with_city": sum(bool(truth.city) for truth in truths),
        "with_country": sum(bool(truth.country) for truth in truths),
        "missing": sum(1 for truth in truths if truth.id not in guesses),
        "unusable": sum(1 for truth in truths if truth.id in guesses and guesses[truth.id].error),
        "predictions_without_truth": sum(1 for guess_id in guesses if guess_id not in truth_ids),
    }


def _truth_names(truths: list[Truth]) -> list[tuple[str, str]]:
    """(city, country) of each truth row; rows of a coordinate-only file named by offline reverse geocoding."""
    bare = [index for index, truth in enumerate(truths) if not (truth.city or truth.country) and truth.lat is not None]
    named = [(truth.city, truth.country) for truth in truths]
    if bare:
        found = geo.reverse_geocode_many([truths[i].lat for i in bare], [truths[i].lon for i in bare])
        for index, place in zip(bare, found, strict=True):
            named[index] = (place.city, place.country_code)
    return named


def _answers_filled_in(guesses: list[Guess]) -> list[str]:
    """The "City, Country" answer of each guess; bare coordinates (no name at all) named by offline reverse
    geocoding. Names given are kept as given: an answer that names only a country is not credited with a city."""
    bare = [index for index, guess in enumerate(guesses) if not guess.answer and guess.lat is not None]
    answers = [guess.answer for guess in guesses]
    if bare:
        found = geo.reverse_geocode_many([guesses[i].lat for i in bare], [guesses[i].lon for i in bare])
        for index, place in zip(bare, found, strict=True):
            answers[index] = f"{place.city}, {place.country_code}"
    return answers


def _sample(truth: Truth, guess: Guess, distance: float, truth_names: tuple[str, str], answer: str) -> dict[str, Any]:
    (truth_city, truth_country), (guess_city, guess_country) = truth_names, answer_parts(answer)
    country_match = bool(answer) and country_within(guess_country, truth_country)
    # Two cities of one name in different countries (Paris, France / Paris, Texas) are not a match.
    named_country = guess_country if guess_country != guess_city else ""
    city_match = bool(answer) and same_city(guess_city, truth_city) and (
        not named_country or not truth_country or same_country(named_country, truth_country)
    )
    return {
        "id": truth.id,
        "truth": {"lat": truth.lat, "lon": truth.lon, "city": truth_city, "country": truth_country},
        "guess": vars(guess) | {"city": guess_city, "country": guess_country},  # vars: asdict deep-copies, slowly
        "distance_km": None if math.isnan(distance) else distance,
        "country_match": country_match,
        "city_match": city_match,
    }


@lru_cache(maxsize=65536)
def same_country(a: str, b: str) -> bool:
    """Whether two country names / codes name one country ("USA" and "United States", "GB" and "UK"), or
    a name GeoNames does not know is (a misspelling of) the other ("Germny"; a ground truth's "Gautemala")."""
    if not (geo.name_key(a) and geo.name_key(b)):
        return False
    code_a, code_b = geo.normalize_country(a), geo.normalize_country(b)
    if code_a is not None and code_b is not None:
        return code_a == code_b
    # At least one is a name GeoNames does not know: compare spellings (the known one's GeoNames name too).
    unknown, other, known = (a, b, code_b) if code_a is None else (b, a, code_a)
    spellings = [other] + ([geo.country_info(known).name] if known else [])
    return any(geo.name_key(unknown) == geo.name_key(name) or _close_spelling(unknown, name) for name in spellings)


@lru_cache(maxsize=65536)
def country_within(a: str, b: str) -> bool:
    """Whether the country part `a` of an answer names country `b`, or a place within it ("Lagos" within
    Nigeria: what GAEA's judge question "is the prediction within the ground truth?" accepts)."""
    if same_country(a, b):
        return True
    code_b = geo.normalize_country(b) if b else None
    if not a or code_b is None or geo.normalize_country(a) is not None:
        return False
    place = _geocode(a)
    return place is not None and place.country_code == code_b


@lru_cache(maxsize=65536)
def same_city(a: str, b: str) -> bool:
    """Whether two city names name one city once case, accents and aliases are set aside ("Roma", "Rome"),
    or `a` misspells `b` and is itself no city GeoNames knows ("Marseile")."""
    key_a, key_b = geo.normalize_city(a) if a else "", geo.normalize_city(b) if b else ""
    if not key_a or not key_b:
        return False
    if key_a == key_b:
        return True
    return _geocode(a) is None and (_close_spelling(a, b) or _close_spelling(key_a, key_b))


def _close_spelling(a: str, b: str) -> bool:
    """Whether `a` is a misspelling of `b`: long enough names that differ in a letter or two."""
    key_a, key_b = geo.name_key(a), geo.name_key(b)
    if min(len(key_a), len(key_b)) < 5:
        return False
    return difflib.SequenceMatcher(None, key_a, key_b).ratio() >= SPELLING_RATIO


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
    # errors="replace": a stray byte in a name or id spoils that text only, the same way in truth and predictions.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
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
    answer = ", ".join(part for part in (prediction.city, prediction.country) if part)
    return Guess(
        item_id, prediction.lat, prediction.lon, prediction.city, prediction.country, prediction.raw, "model",
        answer=answer,
    )


def locate_worker(locate: Callable[[Any], Any], images: dict[str, Path]) -> Callable[[Truth], dict[str, Any]]:
    """The runner's per-item work for `gaea eval geo --images`: locate one photo (`located`), keep the guess
    as a sample (`located_sample`)."""

    def work(truth: Truth) -> dict[str, Any]:
        return located_sample(truth, located(locate, images.get(truth.id)))

    return work


@dataclass(frozen=True)
class TruthPhoto:
    """A ground-truth row with its photo: an item of `gaea eval geo --images` on a cluster, so each part
    carries its own photos' paths (eval.cluster)."""

    truth: Truth
    path: Path | None

    @property
    def id(self) -> str:
        return self.truth.id


def located(locate: Callable[[Any], Any], path: Path | None) -> Any:
    """The model's `gaea.types.Prediction` for the photo at `path`, or why there is none (text).

    The photo passes the image gate before the model sees it: a bad image is a bad input (recorded once,
    not retried on resume), a model failure is a model error (retried on resume).
    """
    if path is None:
        return "no image"
    try:
        image = load_image(path)
    except BadInputError as error:
        return f"image: {error}"
    try:
        return locate(image)
    except BackendUnreachableError:
        raise
    except (BackendError, BadInputError) as error:
        return f"model: {error}"


def located_sample(truth: Truth, prediction: Any) -> dict[str, Any]:
    """The sample of what `located` gave: the guess read from the prediction, or its error."""
    if isinstance(prediction, str):
        return asdict(Guess(truth.id, error=prediction))
    return asdict(guess_from_prediction(truth.id, prediction))


def images_by_id(truths: list[Truth], images_dir: str | Path) -> dict[str, Path]:
    """The photo of each ground-truth id under `images_dir` (ids are file names, with or without a suffix,
    or paths relative to the folder)."""
    source = open_source(images_dir)
    if source.kind != "folder":
        raise BadInputError(f"{images_dir}: expected a folder of photos (ids are their file names)")
    files: dict[str, Path] = {}
    for row in source.rows():
        if isinstance(row, Row) and row.image is not None and row.image.path is not None:
            path = Path(row.image.path)
            for name in (row.photo, path.name, path.stem):
                files.setdefault(name, path)
    found = {truth.id: files.get(truth.id) for truth in truths}
    return {key: path for key, path in found.items() if path is not None}
