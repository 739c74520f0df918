"""End to end: `gaea eval bench` with the tiny model on a dataset that `gaea data build` makes from the shared
photos, run as a subprocess, killed half-way and resumed: every id is scored exactly once. And the judge
served by a real `transformers serve` with the tiny model, whose nonsense replies must become judge errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from eval.compare import compare_table
from eval.data import load_bench
from eval.judge import JudgeParseError, parse_judge_reply, score_of
from gaea.cli import main
from tests.servers import transformers_serve

GAEA = str(Path(sys.executable).parent / "gaea")
LIMIT = 12


@pytest.fixture(scope="module")
def bench_dataset(tmp_path_factory, shared_data) -> Path:
    """A QA dataset built by `gaea data build` from the shared photos (8 with GPS) and a real OSM extract."""
    out = tmp_path_factory.mktemp("bench") / "dataset"
    subprocess.run(
        [GAEA, "data", "build", "--images", str(shared_data / "photos"), "--out", str(out),
         "--osm-file", str(shared_data / "osm" / "west-oakland.osm.bz2"), "--no-hf", "--quiet", "--workers", "1"],
        check=True, timeout=300, capture_output=True,
    )
    return out


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _wait_for_samples(process: subprocess.Popen, samples: Path, count: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_lines(samples)) < count:
        if process.poll() is not None:
            pytest.fail(f"the run ended (code {process.returncode}) before it was killed:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {count} samples after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def test_bench_killed_half_way_and_resumed_scores_every_id_once(bench_dataset, tiny_vlm, tmp_path):
    out = tmp_path / "run"
    command = [GAEA, "eval", "bench", "--dataset", str(bench_dataset), "--model", str(tiny_vlm), "--judge-free",
               "--out", str(out), "--limit", str(LIMIT), "--max-new-tokens", "6"]
    log = tmp_path / "first.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_samples(process, out / "samples.jsonl", LIMIT // 2, log, timeout_s=240)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    before = _lines(out / "samples.jsonl")
    assert LIMIT // 2 <= len(before) < LIMIT, "the kill should land half-way"
    assert not (out / "results.json").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    after = _lines(out / "samples.jsonl")
    assert after[: len(before)] == before  # finished work is kept, not redone
    ids = [json.loads(line)["id"] for line in after]
    expected = [item.id for item in load_bench(bench_dataset, limit=LIMIT)]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids)) == LIMIT

    results = json.loads((out / "results.json").read_text())
    assert results["judge_free"] is True and results["judge"] == "judge-free"
    assert set(results["scores"]) == {"MCQ", "TF", "SVQA", "LVQA", "overall"}
    assert sum(count["items"] for count in results["counts"].values()) == LIMIT
    assert "judge-free" in (out / "results.md").read_text() and "judge-free" in resumed.stdout
    assert (out / "scores.png").stat().st_size > 1000
    table = compare_table([out, out])
    assert "| overall |" in table and table.count(str(out)) == 2


def test_tiny_model_judge_says_nonsense_and_errors_are_counted_not_scored(bench_dataset, tiny_vlm, tmp_path):
    out = tmp_path / "judged"
    with transformers_serve(tiny_vlm) as judge_url:
        served = httpx.get(f"{judge_url}/models", timeout=10).json()["data"][0]["id"]
        code = main(["eval", "bench", "--dataset", str(bench_dataset), "--model", str(tiny_vlm),
                     "--max-new-tokens", "6",
                     "--judge-base-url", judge_url, "--judge-model", served, "--judge-max-tokens", "16",
                     "--types", "MCQ,SVQA", "--limit", "4",
                     "--out", str(out)])
    assert code == 0
    samples = [json.loads(line) for line in _lines(out / "samples.jsonl")]
    assert len(samples) == 4
    for sample in samples:
        assert sample["judge_replies"], "the judge was asked"
        if sample["score"] is None:
            assert sample["error"].startswith("judge parse:")
            assert len(sample["judge_replies"]) == 3  # asked again twice before giving up
            for reply in sample["judge_replies"]:
                with pytest.raises(JudgeParseError):
                    parse_judge_reply(reply, sample["question_type"])
        else:  # a reply that happens to parse must give exactly the recorded score
            assert score_of(parse_judge_reply(sample["judge_replies"][-1], sample["question_type"])) == sample["score"]
    errors = sum(sample["score"] is None for sample in samples)
    assert errors >= 1, "random weights should not write the judge's JSON"
    results = json.loads((out / "results.json").read_text())
    assert results["judge_free"] is False and results["judge"] == f"llm:{served}"
    assert results["errors"].get("judge parse") == errors
    assert sum(count["errors"] for count in results["counts"].values()) == errors
    if errors == 4:
        assert results["scores"]["overall"] is None  # nothing scored: no number is made up


def test_geo_locates_photos_with_a_model_and_counts_nonsense_as_misses(shared_data, tiny_vlm, tmp_path):
    out = tmp_path / "geo"
    truth = shared_data / "photos" / "expected_gps.csv"
    argv = ["eval", "geo", "--truth", str(truth), "--images", str(shared_data / "photos"), "--model", str(tiny_vlm),
            "--max-new-tokens", "6", "--out", str(out)]
    assert main(argv) == 0
    predictions = [json.loads(line) for line in _lines(out / "predictions.jsonl")]
    assert len(predictions) == 8 and len({p["id"] for p in predictions}) == 8  # the 8 photos with GPS
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["truth_rows"] == 8 and results["model"] == str(tiny_vlm)
    unusable = sum(1 for p in predictions if p["lat"] is None)
    assert results["counts"]["truth_rows"] - results["counts"]["predicted"] == unusable
    for key, value in results["accuracy"].items():  # a miss is never a hit: at most the usable share
        assert value <= 100.0 * (8 - unusable) / 8, key
    assert main(argv) == 0  # a rerun finds every photo located and asks the model nothing
    assert len(_lines(out / "predictions.jsonl")) == 8
