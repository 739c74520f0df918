"""The QA record and its one renderer: what a model is shown and taught for each question type (snapshots),
records read from GAEA-Bench's published layout (options inside the question, lettered answers, yes / no),
ids the same on every machine, and `gaea data export`, `gaea finetune` and `gaea eval bench` showing a model
the very same user turn and target for the same records.

To accept a deliberate change of a rendering: ``GAEA_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_records.py``,
then read the diff of tests/snapshots/ before committing it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_pipeline import build, photo_folder, points_inside
from test_prompts import check_snapshot

from data_pipeline.export import export_dataset
from finetune.data import load_samples
from gaea.cli import main
from gaea.errors import BadInputError
from gaea.io import read_jsonl
from gaea.records import INSTRUCTIONS, QARecord, content_id, option_index, render, split_options, truth_value
from tests.servers import recording_openai_server

#: GAEA-Bench's way of writing a multiple-choice question, as published.
GAEA_MCQ = ("Which bank near the spot where this photo was taken has an ATM? Choose one option:\n"
            "A. BBVA has an ATM  B. No banks with ATMs nearby\nC. Kutxabank has an ATM  D. Santander has an ATM")

# One record of each type as `gaea data build` writes them, and two rows as GAEA-Bench publishes them.
RECORDS = {
    "mcq": QARecord("m1", "images/a.jpg", "Which of these can be found within 1 km of where this photo was taken?",
                    "post office", "MCQ", options=["stadium", "post office", "lighthouse", "castle"]),
    "mcq_gaea_bench": QARecord.from_dict({"image": "GLDv2/0/1/abc.jpg", "question": GAEA_MCQ,
                                          "answer": "C. Kutxabank has an ATM", "question_type": "MCQ"}),
    "tf": QARecord("t1", "images/a.jpg", "True or false: this photo was taken in the Southern Hemisphere.", "False",
                   "TF"),
    "tf_gaea_bench": QARecord.from_dict({"image": "x.jpg", "question": "The Basilica of San Francesco is within "
                                         "walking distance of this spot.", "answer": "yes", "question_type": "TF"}),
    "svqa": QARecord("s1", "images/a.jpg", "What is the name of the nearest cafe to where this photo was taken?",
                     "Caffè dei Costanti", "SVQA"),
    "lvqa": QARecord("l1", "images/a.jpg", "Describe where this photo was taken and what is around that spot.",
                     "This photo was taken near Arezzo, Tuscany, Italy, in Europe, in the Northern and Eastern "
                     "hemispheres. Traffic there drives on the right.", "LVQA"),
    "loc": QARecord("p1", "images/a.jpg", "Where was this photo taken? Give the city, the country and the "
                    "coordinates.", "Arezzo, Italy (43.46745, 11.88513)", "LOC"),
}


def _shown(rendered) -> str:
    return f"{rendered.prompt}\n=== target ===\n{rendered.target}\n"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_rendering_snapshot(name: str) -> None:
    record = RECORDS[name]
    rendered = render(record)
    check_snapshot(f"record_{name}", _shown(rendered))
    assert rendered.prompt.endswith("\n" + INSTRUCTIONS[record.question_type])
    assert rendered.prompt.startswith(record.question)


def test_mcq_options_and_targets_share_one_alphabet() -> None:
    rendered = render(RECORDS["mcq"])
    assert "\nA. stadium\nB. post office\nC. lighthouse\nD. castle\n" in rendered.prompt
    assert rendered.target == "B. post office"
    gaea = RECORDS["mcq_gaea_bench"]
    assert gaea.options == ["BBVA has an ATM", "No banks with ATMs nearby", "Kutxabank has an ATM",
                            "Santander has an ATM"]
    assert gaea.question.endswith("Choose one option:") and gaea.answer == "Kutxabank has an ATM"
    assert render(gaea).target == "C. Kutxabank has an ATM"  # GAEA-Bench's own answer, letter and text
    assert render(RECORDS["tf_gaea_bench"]).target == "True" and render(RECORDS["tf"]).target == "False"


@pytest.mark.parametrize(
    ("question", "stem", "options"),
    [
        (GAEA_MCQ, GAEA_MCQ.split("\n")[0],
         ["BBVA has an ATM", "No banks with ATMs nearby", "Kutxabank has an ATM", "Santander has an ATM"]),
        ("Which city?\nA. Rome\nB. Arezzo\nC. Siena", "Which city?", ["Rome", "Arezzo", "Siena"]),
        ("Which city? (A) Rome (B) Arezzo (C) Siena (D) Pisa", "Which city?", ["Rome", "Arezzo", "Siena", "Pisa"]),
        ("Which city? A) Rome B) Arezzo", "Which city?", ["Rome", "Arezzo"]),
        # An "A." inside the question is not an option list: the list is the last full run of markers.
        ("Is Plan A. the right one? Choose one option:\nA. yes  B. no", "Is Plan A. the right one? Choose one option:",
         ["yes", "no"]),
    ],
)
def test_options_written_inside_the_question_are_read_out(question: str, stem: str, options: list[str]) -> None:
    assert split_options(question) == (stem, options)


@pytest.mark.parametrize("question", ["Which city is this?", "What is A. B. C?", "Choose:\nA. Rome", "Vitamin A. B"])
def test_questions_without_an_option_list_keep_their_text(question: str) -> None:
    assert split_options(question) == (question, None)


def test_answers_name_their_option_by_letter_or_text() -> None:
    options = ["BBVA has an ATM", "No banks with ATMs nearby", "Kutxabank has an ATM"]
    assert [option_index(answer, options) for answer in ("C", "(c)", "C. Kutxabank has an ATM", "c) kutxabank "
            "has an atm", " kutxabank has an ATM ", "B", "D", "C. BBVA has an ATM", "Kutxabank")] == [
        2, 2, 2, 2, 2, 1, None, None, None]
    assert [truth_value(answer) for answer in ("True", "false.", "Yes, it is", "no", "maybe", "")] == [
        "True", "False", "True", "False", None, None]


def test_rows_that_cannot_be_records_are_clear_errors() -> None:
    with pytest.raises(BadInputError, match="none of the options"):
        QARecord.from_dict({"question": GAEA_MCQ, "answer": "E. Sabadell", "question_type": "MCQ"})
    with pytest.raises(BadInputError, match="neither"):
        QARecord.from_dict({"question": "Rome is in Italy.", "answer": "probably", "question_type": "TF"})
    with pytest.raises(BadInputError, match="lacks answer"):
        QARecord.from_dict({"question": "Where?", "question_type": "SVQA"})
    with pytest.raises(BadInputError, match="none of the options"):
        render(QARecord("x", "", "Which?", "pear", "MCQ", options=["apple", "plum"]))


def test_ids_are_the_same_on_every_machine() -> None:
    row = {"question": "Which city is this?", "answer": "Arezzo", "question_type": "SVQA", "lat": "43.46",
           "lon": "11.88", "subset": "MP16"}
    here = QARecord.from_dict({**row, "image": "/home/ana/GAEA-Bench/images/0001.jpg"})
    there = QARecord.from_dict({**row, "image": "D:\\data\\bench\\0001.jpg"})
    relative = QARecord.from_dict({**row, "image": "0001.jpg"})
    assert here.id == there.id == relative.id == content_id("SVQA", "Which city is this?", "Arezzo", "0001.jpg")
    assert QARecord.from_dict({**row, "image": "0001.jpg", "answer": "Siena"}).id != here.id
    assert QARecord.from_dict({**row, "image": "0002.jpg"}).id != here.id
    assert (here.lat, here.lon, here.source) == (43.46, 11.88, "MP16")  # coordinates as strings, subset as source
    assert QARecord.from_dict({**row, "id": "own"}).id == "own"


def test_a_record_survives_its_own_dict() -> None:
    for record in RECORDS.values():
        assert QARecord.from_dict(record.to_dict()) == record


# ---------------------------------------------------------------------------------------------- train = eval


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, shared_data: Path) -> Path:
    """A real `gaea data build` (two photos in West Oakland), plus rows in GAEA-Bench's published layout
    about its photos: an MCQ with its options inside the question, a TF answered "yes"."""
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    root = tmp_path_factory.mktemp("records")
    folder = photo_folder(shared_data / "photos", root / "photos", points_inside(extract, 2, seed=4), bad=False)
    build(folder, root / "ds", extract, hf_dataset=False)
    built = list(read_jsonl(root / "ds" / "qa.jsonl"))
    image = built[0]["image"]
    published = [{"image": image, "question": GAEA_MCQ, "answer": "C. Kutxabank has an ATM", "question_type": "MCQ"},
                 {"image": image, "question": "There is a post office near this spot.", "answer": "yes",
                  "question_type": "TF"}]
    with open(root / "ds" / "qa.jsonl", "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in published)
    assert {row["question_type"] for row in built} == {"MCQ", "TF", "SVQA", "LVQA", "LOC"}
    return root / "ds"


def _text_part(content: list[dict]) -> str:
    (text,) = [part["text"] for part in content if part["type"] == "text"]
    return text


def test_export_finetune_and_eval_show_the_same_turns(dataset: Path, tmp_path: Path) -> None:
    records = [QARecord.from_dict(row) for row in read_jsonl(dataset / "qa.jsonl")]
    expected = {record.id: (render(record).prompt, render(record).target) for record in records}

    export_dataset(dataset, "llava", tmp_path / "llava.jsonl")
    llava = {row["id"]: (row["conversations"][0]["value"].removeprefix("<image>\n"), row["conversations"][1]["value"])
             for row in read_jsonl(tmp_path / "llava.jsonl")}
    export_dataset(dataset, "messages", tmp_path / "messages.jsonl")
    messages = [(_text_part(row["messages"][0]["content"]), _text_part(row["messages"][1]["content"]))
                for row in read_jsonl(tmp_path / "messages.jsonl")]
    trained = {sample.id: (_text_part(sample.messages[0]["content"]), _text_part(sample.messages[1]["content"]))
               for sample in load_samples(dataset)}
    assert llava == trained == expected and messages == list(expected.values())

    # The model under evaluation, a real OpenAI-compatible server on loopback, records what it is asked.
    with recording_openai_server("B") as (base_url, requests):
        code = main(["eval", "bench", "--dataset", str(dataset), "--base-url", base_url, "--served-model", "stub",
                     "--judge-free", "--concurrency", "1", "--out", str(tmp_path / "run")])
    assert code == 0
    asked = [_text_part(next(m for m in request.body["messages"] if m["role"] == "user")["content"])
             for request in requests if request.path.endswith("/chat/completions")]
    samples = list(read_jsonl(tmp_path / "run" / "samples.jsonl"))
    bench = [record for record in records if record.question_type != "LOC"]  # LOC is `gaea eval geo`'s
    assert [sample["id"] for sample in samples] == [record.id for record in bench]
    assert asked == [expected[record.id][0] for record in bench]
    assert [sample["reference"] for sample in samples] == [expected[record.id][1] for record in bench]
    published_mcq = samples[-2]
    assert published_mcq["reference"] == "C. Kutxabank has an ATM" and samples[-1]["reference"] == "True"
    assert "\nC. Kutxabank has an ATM\nD. Santander has an ATM\n" in asked[-2]
