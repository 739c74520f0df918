"""Distance and city / country accuracy: checked against geopy's geodesic on the real Im2GPS3k ground truth
with predictions moved by known offsets, the missing-prediction rule, and name normalisation."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
from geopy.distance import geodesic

from eval.compare import compare_table
from eval.geo_eval import evaluate, read_predictions, read_truth, same_city, same_country
from gaea.cli import main
from gaea.errors import BadInputError

# Offsets well inside the threshold bands, so the 0.56 % sphere / ellipsoid difference cannot move an item
# across a threshold.
OFFSETS_KM = (0.3, 12.0, 100.0, 480.0, 1600.0, 6000.0)
THRESHOLDS = {"1km": 1, "25km": 25, "200km": 200, "750km": 750, "2500km": 2500}


@pytest.fixture(scope="module")
def im2gps3k(shared_data):
    return shared_data / "benchmarks" / "im2gps3k_latlon.csv"


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _perturbed_predictions(truths, path):
    """Each point moved by a known geodesic offset on a random bearing; every 10th row missing and every
    17th row an unparsable text. Returns the offset of each truth row (NaN: a miss)."""
    rng = np.random.default_rng(0)
    rows, offsets = [], []
    for index, truth in enumerate(truths):
        if index % 10 == 9:
            offsets.append(math.nan)
            continue
        if index % 17 == 16:
            rows.append([truth.id, "", "", "somewhere warm, I think"])
            offsets.append(math.nan)
            continue
        offset = OFFSETS_KM[index % len(OFFSETS_KM)]
        moved = geodesic(kilometers=offset).destination((truth.lat, truth.lon), bearing=rng.uniform(0, 360))
        rows.append([truth.id, f"{moved.latitude:.7f}", f"{moved.longitude:.7f}", ""])
        offsets.append(offset)
    rows.append(["not-in-the-truth.jpg", "10", "10", ""])
    _write_csv(path, ["img_id", "Latitude", "LONGITUDE", "Prediction"], rows)
    return np.array(offsets)


def test_distance_metrics_match_geodesic_on_im2gps3k(im2gps3k, tmp_path):
    truths = read_truth(im2gps3k)
    assert len(truths) == 2997  # the three rows without coordinates are not ground truth
    offsets = _perturbed_predictions(truths, tmp_path / "pred.csv")
    guesses = read_predictions(tmp_path / "pred.csv")
    summary, samples = evaluate(truths, guesses)

    for key, threshold in THRESHOLDS.items():
        expected = 100.0 * np.sum(offsets <= threshold) / len(truths)  # NaN <= t is False: misses
        assert summary["accuracy"][key] == pytest.approx(expected, abs=1e-9), key
    assert summary["accuracy"]["1km"] < summary["accuracy"]["2500km"] < 90.0

    # every distance against geopy's ellipsoidal distance between the truth and the moved point
    truth_by_id = {truth.id: truth for truth in truths}
    for sample in samples:
        guess = sample["guess"]
        if sample["distance_km"] is None:
            continue
        truth = truth_by_id[sample["id"]]
        reference = geodesic((truth.lat, truth.lon), (guess["lat"], guess["lon"])).km
        assert sample["distance_km"] == pytest.approx(reference, rel=0.006, abs=0.002)

    expected_median = float(np.median(np.where(np.isnan(offsets), np.inf, offsets)))
    assert summary["median_km"] == pytest.approx(expected_median, rel=0.006)
    expected_geoscore = np.mean(np.where(np.isnan(offsets), 0.0, 5000 * np.exp(-np.nan_to_num(offsets) / 1492.7)))
    assert summary["geoscore"] == pytest.approx(expected_geoscore, rel=0.006)
    counts = summary["counts"]
    assert counts["truth_rows"] == 2997 and counts["predictions_without_truth"] == 1
    assert counts["missing"] == int(np.sum(np.arange(2997) % 10 == 9))
    assert counts["unusable"] == sum(1 for i in range(2997) if i % 10 != 9 and i % 17 == 16)


def test_missing_predictions_are_misses_over_all_truth_rows(im2gps3k, tmp_path):
    truths = read_truth(im2gps3k)
    exact = [[truth.id, truth.lat, truth.lon] for truth in truths[:100]]
    _write_csv(tmp_path / "pred.csv", ["ID", "lat", "lon"], exact)
    summary, _ = evaluate(truths, read_predictions(tmp_path / "pred.csv"))
    for key in THRESHOLDS:
        assert summary["accuracy"][key] == pytest.approx(100.0 * 100 / 2997)
    assert summary["median_km"] is None  # most rows are misses: the median error is unbounded
    assert summary["geoscore"] == pytest.approx(5000.0 * 100 / 2997)
    assert summary["counts"]["missing"] == 2897


def test_geo_cli_writes_results_plot_and_table(im2gps3k, tmp_path):
    truths = read_truth(im2gps3k)
    _perturbed_predictions(truths, tmp_path / "pred.csv")
    out = tmp_path / "run"
    predictions = str(tmp_path / "pred.csv")
    assert main(["eval", "geo", "--truth", str(im2gps3k), "--predictions", predictions, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == set(THRESHOLDS)
    assert results["task"] == "geo" and results["counts"]["truth_rows"] == 2997
    assert {"median_km", "geoscore", "city_accuracy", "country_accuracy", "config", "versions"} <= set(results)
    assert (out / "distance_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2500km" in (out / "results.md").read_text()
    assert sum(1 for _ in open(out / "samples.jsonl")) == 2997
    table = compare_table([out, out])  # a run without a judge: no judge columns filled
    assert "| acc @ 25 km (%) |" in table and "| city % (LLM judge) | - | - |" in table


def test_city_and_country_accuracy_from_text_predictions(shared_data, tmp_path):
    truth = shared_data / "photos" / "expected_gps.csv"  # columns: file, lat, lon, place, admin1, country_code
    rows = [
        ["DSCN0010.jpg", "Arezzo, Italy"],
        ["DSCN0012.jpg", "arezzo, IT"],
        ["DSCN0021.jpg", "I believe this is Florence, Italy."],
        ["DSCN0025.jpg", '{"latitude": 43.4683, "longitude": 11.8816}'],
        ["67-0_length_string.jpg", "Gummersbach, Deutschland"],
        ["Kodak_CX7530.jpg", "Nairobi, Kenya"],
        ["DSCN0029.jpg", "no idea"],
    ]
    _write_csv(tmp_path / "pred.csv", ["id", "prediction"], rows)
    summary, samples = evaluate(read_truth(truth), read_predictions(tmp_path / "pred.csv"))
    by_id = {sample["id"]: sample for sample in samples}
    assert [by_id[name]["city_match"] for name, _ in rows] == [True, True, False, True, True, False, False]
    assert [by_id[name]["country_match"] for name, _ in rows] == [True, True, True, True, True, True, False]
    assert not by_id["DSCN0027.jpg"]["country_match"]  # no prediction at all
    assert summary["city_accuracy"] == pytest.approx(100 * 4 / 8)
    assert summary["country_accuracy"] == pytest.approx(100 * 6 / 8)
    assert summary["accuracy"]["1km"] == pytest.approx(100 * 3 / 8)  # Arezzo by name (twice) and by coordinates


@pytest.mark.parametrize(
    ("a", "b"),
    [("USA", "United States"), ("u.s.a.", "US"), ("UK", "United Kingdom"), ("GB", "Great Britain"),
     ("Côte d'Ivoire", "cote d'ivoire"), ("Deutschland", "de"), ("ITA", "Italy"), ("the Netherlands", "Holland")],
)
def test_country_names_normalised(a, b):
    assert same_country(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [("Austria", "Australia"), ("Niger", "Nigeria"), ("", ""), ("Atlantis", "Narnia"), ("Atlantis", "")]
)
def test_different_or_unknown_countries_do_not_match(a, b):
    assert not same_country(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [("São Paulo", "sao paulo"), ("München", "Munich"), ("Roma", "Rome"), ("AREZZO", "Arezzo")]
)
def test_city_names_normalised(a, b):
    assert same_city(a, b)


def test_different_cities_do_not_match():
    assert not same_city("Florence", "Arezzo")
    assert not same_city("", "")


def test_bad_csv_is_a_clear_error(tmp_path):
    _write_csv(tmp_path / "t.csv", ["name", "x", "y"], [["a", "1", "2"]])
    with pytest.raises(BadInputError, match="missing column"):
        read_truth(tmp_path / "t.csv")
    _write_csv(tmp_path / "p.csv", ["id", "guess"], [["a", "Rome"]])
    with pytest.raises(BadInputError, match="lat and lon columns or a prediction column"):
        read_predictions(tmp_path / "p.csv")
    with pytest.raises(BadInputError, match="no such CSV"):
        read_truth(tmp_path / "missing.csv")


def test_a_run_directory_is_not_resumed_with_other_inputs(shared_data, tmp_path, capsys):
    truth = shared_data / "photos" / "expected_gps.csv"
    first = _write_csv(tmp_path / "a.csv", ["id", "prediction"], [["DSCN0010.jpg", "Arezzo, Italy"]])
    second = _write_csv(tmp_path / "b.csv", ["id", "prediction"], [["DSCN0010.jpg", "Rome, Italy"]])
    out = tmp_path / "run"
    assert main(["eval", "geo", "--truth", str(truth), "--predictions", str(first), "--out", str(out)]) == 0
    assert main(["eval", "geo", "--truth", str(truth), "--predictions", str(second), "--out", str(out)]) == 2
    changed = r"was made with predictions \S*a\.csv\S*; this run asks for predictions \S*b\.csv\S*: use another --out"
    assert re.search(changed, capsys.readouterr().err)
