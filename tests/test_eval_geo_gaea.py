"""`gaea eval geo --truth` on each of GAEA's ground-truth files as released (../shared/data/benchmarks/gaea):
predictions made from the truth (known offsets; names exact, re-cased and stripped of accents, aliased,
misspelt, wrong, missing), the accuracies expected computed here from the file itself, and GAEA's LLM judge
served on 127.0.0.1 by a scripted judge."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import threading
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from benchmarks._common import loopback_http_server
from eval.compare import compare_table
from eval.geo_judge import GAEA_SYSTEM, gaea_question, parse_score
from gaea import geo
from gaea.cli import main

# The released layouts: id, latitude, longitude, city and country columns (None: the file has none).
LAYOUTS = {
    "im2gps3k_citygt.csv": ("IMG_ID", "LAT", "LON", "CITY", "COUNTRY"),
    "im2gps_citygt.csv": ("IMG_ID", "LAT", "LON", "CITY", "COUNTRY"),
    "gws15k_citygt.csv": ("FILE", "LAT", "LON", "CITY", "COUNTRY"),
    "geode_citygt.csv": ("file_path", "lat", "lon", "city", "country"),
    "cityguessr_citygt.csv": ("FILE", None, None, "CITY", "COUNTRY"),
    "dollarstreet_citygt.csv": ("id", None, None, None, "country.name"),
}
# Offsets well inside the threshold bands, so the 0.56 % sphere / ellipsoid difference cannot move an item
# across a threshold.
OFFSETS_KM = (0.3, 12.0, 100.0, 480.0, 1600.0, 6000.0)
THRESHOLDS = (1, 25, 200, 750, 2500)
ALIASES = {
    "United States": "USA", "United Kingdom": "UK", "Netherlands": "Holland", "Germany": "Deutschland",
    "Italy": "Italia", "Spain": "España", "Brazil": "Brasil", "Czech Republic": "Czechia", "Russia": "RU",
    "Japan": "JPN", "France": "FR", "China": "CHN", "India": "IN", "Mexico": "MEX", "Australia": "AUS",
}  # fmt: skip


def _name(row: dict[str, str], column: str | None) -> str:
    """A name with underscores as spaces; a dash (Im2GPS3k writes "-" for an unknown city) is no name."""
    name = row[column].replace("_", " ") if column else ""
    return name if any(char.isalnum() for char in name) else ""


def _truth_rows(path: Path) -> list[dict[str, str]]:
    """The file read by hand: underscores as spaces, a repeated row once."""
    id_col, lat_col, lon_col, city_col, country_col = LAYOUTS[path.name]
    rows, seen = [], set()
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row[id_col] in seen:
                continue
            seen.add(row[id_col])
            rows.append({
                "id": row[id_col],
                "lat": float(row[lat_col]) if lat_col else None,
                "lon": float(row[lon_col]) if lon_col else None,
                "city": _name(row, city_col),
                "country": _name(row, country_col),
            })  # fmt: skip
    return rows


def _plain(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _misspelt(name: str) -> str | None:
    """The name with one inner letter dropped, where that makes a name GeoNames does not know."""
    if len(name) < 8 or " " in name:
        return None
    wrong = name[: len(name) // 2] + name[len(name) // 2 + 1 :]
    return wrong if geo.geocode(wrong) is None and geo.normalize_country(wrong) is None else None


def _predictions(rows: list[dict], path: Path) -> dict[str, float]:
    """Writes a predictions CSV and returns the expected city / country / distance accuracies.

    Row i (of 20 in turn): 19 missing; 18 wrong city and country; 17 a made-up city in the right country;
    16 the country by an alias; 15 names re-cased and without accents; 14 the city misspelt; 13 the
    country misspelt; otherwise the exact names. Coordinates, where the truth has them, moved by a known
    offset (a miss for the missing rows).
    """
    has_coordinates = rows[0]["lat"] is not None
    out, city_hits, country_hits, offsets = [], 0, 0, []
    for index, row in enumerate(rows):
        kind = index % 20
        city, country = row["city"], row["country"]
        city_ok, country_ok = bool(city), True
        if kind == 19:
            offsets.append(math.nan)
            continue
        if kind == 18:
            city, country = ("Nairobi", "Kenya") if row["country"] != "Kenya" else ("Reykjavik", "Iceland")
            city_ok = country_ok = False
        elif kind == 17:
            city, city_ok = "Qwxzzyville", False
        elif kind == 16:
            country = ALIASES.get(country, country)
        elif kind == 15:
            city, country = _plain(city).upper(), country.lower()
        elif kind == 14 and _misspelt(city):
            city = _misspelt(city)
        elif kind == 13 and _misspelt(country):
            country = _misspelt(country)
        city_hits += city_ok and bool(row["city"])
        country_hits += country_ok
        cells = [row["id"], city, country]
        if has_coordinates:
            # Along the meridian, towards the equator: the great-circle distance is exactly the offset.
            offset = OFFSETS_KM[index % len(OFFSETS_KM)]
            lat = row["lat"] - math.copysign(math.degrees(offset / geo.EARTH_RADIUS_KM), row["lat"])
            cells += [f"{lat:.7f}", f"{row['lon']:.7f}"]
            offsets.append(offset)
        out.append(cells)
    header = ["IMAGE_ID", "city", "Country"] + (["latitude", "longitude"] if has_coordinates else [])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *out])
    total = len(rows)
    expected = {
        "city": 100.0 * city_hits / sum(bool(row["city"]) for row in rows) if rows[0]["city"] else None,
        "country": 100.0 * country_hits / total,
    }
    if has_coordinates:
        distances = np.array(offsets)
        expected |= {f"{km}km": 100.0 * float(np.sum(distances <= km)) / total for km in THRESHOLDS}
    return expected


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_eval_geo_takes_each_gaea_file_as_released(shared_data, tmp_path, name):
    truth = shared_data / "benchmarks" / "gaea" / name
    rows = _truth_rows(truth)
    expected = _predictions(rows, tmp_path / "pred.csv")
    out = tmp_path / "run"
    command = ["eval", "geo", "--truth", str(truth), "--predictions", str(tmp_path / "pred.csv"), "--out", str(out)]
    assert main(command) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["truth_rows"] == len(rows)
    assert results["counts"]["missing"] == sum(1 for index in range(len(rows)) if index % 20 == 19)
    assert results["country_accuracy"] == pytest.approx(expected["country"])
    if expected["city"] is None:
        assert results["city_accuracy"] is None  # Dollar Street names countries only
    else:
        assert results["city_accuracy"] == pytest.approx(expected["city"])
    if rows[0]["lat"] is None:
        assert results["accuracy"] == {f"{km}km": None for km in THRESHOLDS} and results["median_km"] is None
        assert "city and country accuracy only" in (out / "results.md").read_text()
    else:
        for km in THRESHOLDS:
            assert results["accuracy"][f"{km}km"] == pytest.approx(expected[f"{km}km"]), km


def test_the_one_repeated_row_of_dollar_street_counts_once(shared_data):
    from eval.geo_eval import read_truth

    path = shared_data / "benchmarks" / "gaea" / "dollarstreet_citygt.csv"
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    assert len(lines) == 1368 and len(set(lines)) == 1367
    assert len(read_truth(path)) == 1367


def test_one_id_with_two_different_rows_is_refused(tmp_path):
    from eval.geo_eval import read_truth
    from gaea.errors import BadInputError

    path = tmp_path / "t.csv"
    path.write_text("FILE,CITY,COUNTRY\na.jpg,Rome,Italy\na.jpg,Paris,France\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="twice with different values"):
        read_truth(path)


def test_city_and_country_are_read_from_the_answer_the_way_gaea_reads_them(tmp_path):
    from eval.geo_eval import evaluate, read_predictions, read_truth

    (tmp_path / "t.csv").write_text(
        "FILE,CITY,COUNTRY\n"
        + "".join(f"{n}.jpg,{city},{country}\n" for n, (city, country) in enumerate(
            [("Lagos", "Nigeria"), ("Paris", "France"), ("Paris", "France"), ("Rome", "Italy"), ("Kyoto", "Japan"),
             ("Nairobi", "Kenya")])),
        encoding="utf-8",
    )  # fmt: skip
    answers = ["Lagos, Lagos State, Nigeria", "Paris, Texas, USA", "Paris", "Roma, Italia", "Kyoto Japan",
               "I believe this is Nairobi, Kenya"]  # fmt: skip
    (tmp_path / "p.csv").write_text(
        "id,prediction\n" + "".join(f'{n}.jpg,"{answer}"\n' for n, answer in enumerate(answers)), encoding="utf-8"
    )
    _, samples = evaluate(read_truth(tmp_path / "t.csv"), read_predictions(tmp_path / "p.csv"))
    # city = first comma part, country = last; a lone "Paris" lies within France; "Kyoto Japan" is one part;
    # a sentence's first part is not a city name.
    assert [sample["city_match"] for sample in samples] == [True, False, True, True, False, False]
    assert [sample["country_match"] for sample in samples] == [True, False, True, True, False, True]


# ------------------------------------------------------------------------------------------ GAEA's judge


@contextlib.contextmanager
def scripted_judge(unreadable_for: set[str]) -> Iterator[dict]:
    """A judge on 127.0.0.1 that reads GAEA's question and answers 1 when the prediction is the ground
    truth (case aside), 0 otherwise, and something unreadable for the truths in `unreadable_for`."""
    seen: dict = {"questions": [], "systems": [], "authorization": set()}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            system, user = (_text(message["content"]) for message in body["messages"])
            lines = [line for line in user.splitlines() if line.startswith(("Prediction", "Ground"))]
            fields = dict(line.split(": ", 1) for line in lines)
            prediction, truth = fields["Prediction"], fields["Ground Truth"]
            with lock:
                seen["questions"].append((prediction, truth, user))
                seen["systems"].append(system)
                seen["authorization"].add(self.headers.get("Authorization"))
            if truth in unreadable_for:
                reply = "Hard to say, it could be."
            else:
                reply = "1" if prediction.casefold() == truth.casefold() else "0"
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_http_server(Handler) as server:
        seen["base_url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
        yield seen


def _text(content: object) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)  # type: ignore[union-attr]


def test_gaea_judge_asks_gaeas_question_and_does_gaeas_arithmetic(shared_data, tmp_path):
    truth = shared_data / "benchmarks" / "gaea" / "im2gps_citygt.csv"
    rows = _truth_rows(truth)
    unreadable = {"Boston"}  # every Boston row's city verdict is unreadable: left out, counted
    predictions, city_scores, country_scores, unread = [], [], [], 0
    for index, row in enumerate(rows):
        if index % 10 == 9:
            city_scores.append(0)  # no prediction: a miss, no call
            country_scores.append(0)
            continue
        city = row["city"] if index % 3 else "Springfield"
        predictions.append([row["id"], f"{city}, {row['country']}"])
        if row["city"] in unreadable:
            unread += 1
        else:
            city_scores.append(int(city.casefold() == row["city"].casefold()))
        country_scores.append(1)
    with open(tmp_path / "pred.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["id", "prediction"], *predictions])
    out = tmp_path / "run"
    command = ["eval", "geo", "--truth", str(truth), "--predictions", str(tmp_path / "pred.csv"), "--out", str(out),
               "--judge-model", "gpt-4o-mini", "--judge-api-key", "sk-judge-only", "--concurrency", "4"]  # fmt: skip
    with scripted_judge(unreadable) as judge:
        assert main([*command, "--judge-base-url", judge["base_url"]]) == 0
        asked = len(judge["questions"])
        # exactly GAEA's prompt, one question per name of each predicted row, the key sent to the judge
        assert set(judge["systems"]) == {GAEA_SYSTEM}
        assert all(user == gaea_question(pred, gt) for pred, gt, user in judge["questions"])
        assert asked == 2 * len(predictions)
        assert judge["authorization"] == {"Bearer sk-judge-only"}
        assert main([*command, "--judge-base-url", judge["base_url"]]) == 0  # resumed: nothing asked again
        assert len(judge["questions"]) == asked
    results = json.loads((out / "results.json").read_text())
    verdict = results["judge"]
    assert verdict["model"] == "llm:gpt-4o-mini" and results["judge_free"] is False
    assert verdict["city_accuracy"] == pytest.approx(100.0 * sum(city_scores) / len(city_scores))
    assert verdict["country_accuracy"] == pytest.approx(100.0 * sum(country_scores) / len(country_scores))
    assert verdict["counts"]["city_unreadable"] == unread > 0
    assert verdict["counts"]["city_scored"] == len(city_scores)
    assert "sk-judge-only" not in (out / "results.json").read_text() + (out / "run.json").read_text()
    assert "GAEA's question" in (out / "results.md").read_text()
    city_by_judge = f"| city % (LLM judge) | {verdict['city_accuracy']:.1f} |"
    assert city_by_judge in compare_table([out])


def test_judge_options_go_together(shared_data, tmp_path, capsys):
    truth = shared_data / "benchmarks" / "gaea" / "im2gps_citygt.csv"
    (tmp_path / "p.csv").write_text("id,prediction\nx.jpg,Rome\n", encoding="utf-8")
    command = ["eval", "geo", "--truth", str(truth), "--predictions", str(tmp_path / "p.csv"),
               "--out", str(tmp_path / "o"), "--judge-model", "gpt-4o-mini"]  # fmt: skip
    assert main(command) == 2
    assert "--judge-base-url and --judge-model go together" in capsys.readouterr().err


@pytest.mark.parametrize(("reply", "score"), [("1", 1), ("0", 0), (" 1.\n", 1), ("Score: 0", 0), ("**1**", 1),
                                              ("1.0", 1), ("The score is 1", None), ("10", None), ("", None)])
def test_judge_replies_are_read_strictly(reply, score):
    assert parse_score(reply) == score
