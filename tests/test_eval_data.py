"""Loading GAEA-Bench-style data (qa.jsonl directories, parquet with embedded pictures) and the resumable runner."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PIL import Image

from eval.data import BENCH_TYPES, load_bench, parse_types
from eval.runner import finished_samples, run_resumable
from gaea.errors import BadInputError
from gaea.records import QARecord, content_id


def _write_qa(directory, records):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "qa.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return directory


RECORDS = [
    {"image": "DSCN0010.jpg", "question": "Which city is this?", "answer": "Arezzo", "question_type": "SVQA"},
    {"image": "DSCN0010.jpg", "question": "Is this in Italy?", "answer": "Yes", "question_type": "TF"},
    {"image": "DSCN0012.jpg", "question": "Which is nearest?", "answer": "B", "question_type": "MCQ",
     "options": ["harbour", "cathedral", "airport", "stadium"]},
    {"image": "DSCN0012.jpg", "question": "Where was this taken?", "answer": "Arezzo, Italy", "question_type": "LOC"},
    {"id": "own-id", "image": "Kodak_CX7530.jpg", "question": "Describe the place.", "answer": "Nakuru, Kenya ...",
     "question_type": "LVQA"},
]


def test_qa_directory_gives_unique_stable_ids_and_image_paths(tmp_path, photos_dir):
    directory = _write_qa(tmp_path / "ds", RECORDS)
    items = load_bench(directory)
    assert [item.question_type for item in items] == ["SVQA", "TF", "MCQ", "LVQA"]  # LOC is for `gaea eval geo`
    ids = [item.id for item in items]
    assert len(set(ids)) == 4  # two questions about one photo stay two items
    assert ids[0] == content_id("SVQA", "Which city is this?", "Arezzo", "DSCN0010.jpg") and ids[3] == "own-id"
    assert items[1].record.answer == "True"  # a TF answered "Yes" reads as GAEA-Bench writes it
    assert items[2].record.answer == "cathedral"  # an MCQ answered by its letter holds the option's text
    assert items[0].image() == directory / "DSCN0010.jpg"
    assert load_bench(directory / "qa.jsonl", types=("MCQ",))[0].record.options[1] == "cathedral"
    assert [item.id for item in load_bench(directory, limit=2)] == ids[:2]


def test_repeated_questions_get_distinct_ids(tmp_path):
    directory = _write_qa(tmp_path / "ds", [RECORDS[0], RECORDS[0], RECORDS[0]])
    ids = [item.id for item in load_bench(directory)]
    assert ids[1] == ids[0] + "#2" and ids[2] == ids[0] + "#3"


def test_parquet_with_embedded_pictures(tmp_path, photos_dir):
    import datasets

    rows = [dict(record) for record in RECORDS if record["question_type"] != "LOC"]
    table = {
        "image": [Image.open(photos_dir / row["image"]) for row in rows],
        "image_name": [row["image"] for row in rows],
        "question": [row["question"] for row in rows],
        "answer": [row["answer"] for row in rows],
        "question_type": [row["question_type"] for row in rows],
        "lat": [43.46] * len(rows),
        "lon": [11.88] * len(rows),
    }
    features = datasets.Features({
        "image": datasets.Image(), "image_name": datasets.Value("string"), "question": datasets.Value("string"),
        "answer": datasets.Value("string"), "question_type": datasets.Value("string"),
        "lat": datasets.Value("float64"), "lon": datasets.Value("float64"),
    })
    datasets.Dataset.from_dict(table, features=features).to_parquet(str(tmp_path / "bench.parquet"))
    items = load_bench(tmp_path / "bench.parquet", types=("TF", "SVQA"))
    assert [item.question_type for item in items] == ["SVQA", "TF"]
    assert items[0].id == content_id("SVQA", "Which city is this?", "Arezzo", "DSCN0010.jpg")
    picture = items[0].image()
    assert isinstance(picture, Image.Image) and picture.size == Image.open(photos_dir / "DSCN0010.jpg").size


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        load_bench(tmp_path / "nothing.jsonl")
    _write_qa(tmp_path / "bad", [{"image": "a.jpg", "question": "?", "question_type": "MCQ"}])
    with pytest.raises(BadInputError, match="line 1.*lacks answer"):
        load_bench(tmp_path / "bad")
    with pytest.raises(BadInputError, match="no questions of type"):
        load_bench(_write_qa(tmp_path / "loc", [RECORDS[3]]))
    with pytest.raises(BadInputError, match="unknown question type"):
        parse_types("MCQ,essay")
    assert parse_types(None) == BENCH_TYPES and parse_types("tf, mcq") == ("TF", "MCQ")


class _Item:
    def __init__(self, id_: str) -> None:
        self.id = id_


def test_runner_resumes_without_repeating_items(tmp_path):
    items = [_Item(f"q{i}") for i in range(40)]
    samples_path = tmp_path / "samples.jsonl"
    calls: list[str] = []
    lock = threading.Lock()

    def failing_work(item):
        with lock:
            calls.append(item.id)
        if item.id == "q25":
            raise RuntimeError("the machine went away")
        time.sleep(0.005)
        return {"id": item.id, "value": int(item.id[1:]) ** 2}

    with pytest.raises(RuntimeError, match="went away"):
        run_resumable(items, failing_work, samples_path=samples_path, concurrency=4)
    first = finished_samples(samples_path)
    assert 0 < len(first) < 40 and "q25" not in first

    calls.clear()
    samples = run_resumable(items, lambda item: {"id": item.id, "value": int(item.id[1:]) ** 2},
                            samples_path=samples_path, concurrency=8)
    assert [sample["id"] for sample in samples] == [item.id for item in items]
    assert [sample["value"] for sample in samples] == [i * i for i in range(40)]
    lines = [json.loads(line) for line in samples_path.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(item.id for item in items)  # each id written once


def test_runner_keeps_concurrency_bounded(tmp_path):
    in_flight, peak = 0, 0
    lock = threading.Lock()

    def work(item):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.01)
        with lock:
            in_flight -= 1
        return {"id": item.id}

    run_resumable([_Item(str(i)) for i in range(60)], work, samples_path=tmp_path / "s.jsonl", concurrency=5)
    assert peak == 5


def test_qarecord_round_trip_is_what_eval_reads(tmp_path):
    record = QARecord(id="x1", image="p.jpg", question="Q?", answer="A", question_type="LVQA", lat=1.0, lon=2.0)
    items = load_bench(_write_qa(tmp_path / "ds", [record.to_dict()]))
    assert items[0].record == record


def test_rerun_retries_server_failures_but_not_unreadable_judge_replies(tmp_path):
    items = [_Item(f"q{i}") for i in range(6)]
    samples_path = tmp_path / "samples.jsonl"
    failures = {"q1": "model: the model server answered HTTP 503 after 5 tries",
                "q2": "judge backend: cannot reach the judge", "q3": "judge parse: no JSON object"}

    def first(item):
        return {"id": item.id, "score": None if item.id in failures else 10.0, "error": failures.get(item.id)}

    run_resumable(items, first, samples_path=samples_path, concurrency=3)
    redone: list[str] = []

    def second(item):
        redone.append(item.id)
        return {"id": item.id, "score": 5.0, "error": None}

    samples = run_resumable(items, second, samples_path=samples_path)
    assert sorted(redone) == ["q1", "q2"]
    assert [sample["score"] for sample in samples] == [10.0, 5.0, 5.0, None, 10.0, 10.0]
    assert finished_samples(samples_path)["q1"]["error"] is None
