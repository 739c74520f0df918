"""GAEA-Bench as published: a parquet in the released layout (`file_name` the picture, `image` a path string,
`lat` / `lon` strings, MCQ options inside the question, no `options`, no `id`), built here from the shared
photos, then evaluated by `gaea eval bench` against a model and a judge served on 127.0.0.1 with scripted
replies. Every score below is computed by hand from those replies, in both scoring modes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval.data import load_bench
from gaea.cli import main
from gaea.records import content_id
from tests.servers import recording_openai_server

# (picture, question_type, question, answer, what the model answers, strict judge reply, GAEA judge reply)
ROWS = [
    ("DSCN0010.jpg", "MCQ", "Which landmark is closest to where this photo was taken? Choose one option:\n"
     "A. Piazza Grande  B. Colosseum\nC. Mole Antonelliana  D. Rialto Bridge", "A. Piazza Grande",
     "Piazza Grande", '{"match": true}', "10"),  # the option's text without its letter
    ("DSCN0012.jpg", "MCQ", "Which bank has a branch within 200 m of this spot? Choose one option:\n"
     "A. Banca Popolare di Cortona  B. Kutxabank\nC. Monte dei Paschi di Siena  D. BBVA",
     "C. Monte dei Paschi di Siena", "B", '{"match": false}', "0"),
    ("DSCN0021.jpg", "TF", "The Cathedral of Arezzo is within walking distance of this spot.", "True",
     "yes", '{"match": true}', "10"),  # yes means True
    ("Kodak_CX7530.jpg", "TF", "This photo was taken in the Northern Hemisphere.", "False",
     "True.", '{"match": false}', " 0\n"),
    ("DSCN0025.jpg", "SVQA", "Which city is shown in this photo?", "Arezzo",
     "Arezzo", '{"location_prediction": 8, "specificity_relevance": 7}',
     "{'Location_Prediction': 8, 'Specificity_and_Relevance': 7}"),  # 7.5: GAEA counts 7
    ("Kodak_CX7530.jpg", "SVQA", "In which country was this photo taken?", "Kenya",
     "", '{"location_prediction": 10, "specificity_relevance": 9}',
     "{'Location_Prediction': 10.0, 'Specificity_and_Relevance': 9.5}"),  # GAEA: int(10) + int(9.5) = 19 -> 9
    ("DSCN0027.jpg", "LVQA", "Describe the community and the lifestyle of the place in this photo.",
     "This is the historic centre of Arezzo in Tuscany: medieval stone houses, the Piazza Grande with its "
     "antiques fair, and cafes where people meet in the evening.",
     "This is the historic centre of Arezzo in Tuscany: medieval stone houses, the Piazza Grande with its "
     "antiques fair, and cafes where people meet in the evening.", '{"score": 6.5}', "7"),
    ("67-0_length_string.jpg", "LVQA", "What can a visitor expect from the surroundings of this spot?",
     "Gummersbach, a town in the hills of North Rhine-Westphalia, Germany, with a football stadium and "
     "woodland around it.", "", "I cannot grade this answer.", "Score: 8"),  # unreadable both ways
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, photos_dir: Path) -> Path:
    """The released layout, written with `datasets` as the hub's parquet is (the picture embedded)."""
    import datasets

    features = datasets.Features({
        "file_name": datasets.Image(), "image": datasets.Value("string"), "question": datasets.Value("string"),
        "answer": datasets.Value("string"), "lat": datasets.Value("string"), "lon": datasets.Value("string"),
        "location": datasets.Value("string"), "question_type": datasets.Value("string"),
        "subset": datasets.Value("string"),
    })
    gps = {line.split(",")[0]: line.split(",")[1:3] for line in (photos_dir / "expected_gps.csv").read_text().split()}
    table: dict[str, list] = {name: [] for name in features}
    for picture, qtype, question, answer, *_ in ROWS:
        table["file_name"].append({"bytes": (photos_dir / picture).read_bytes(), "path": picture})
        table["image"].append(f"MP16/{picture}")
        table["question"].append(question)
        table["answer"].append(answer)
        table["lat"].append(gps[picture][0])
        table["lon"].append(gps[picture][1])
        table["location"].append("")
        table["question_type"].append(qtype)
        table["subset"].append("MP16")
    path = tmp_path_factory.mktemp("gaea-bench") / "test-00000-of-00001.parquet"
    datasets.Dataset.from_dict(table, features=features).to_parquet(str(path))
    return path


def _row_of(text: str) -> tuple:
    """The row whose question (as rendered, options one per line) a prompt shows."""
    (row,) = [row for row in ROWS if row[2].split("\n")[0] in text]
    return row


def _model_answer(body: dict) -> str:
    user = next(message for message in body["messages"] if message["role"] == "user")
    return _row_of(next(part["text"] for part in user["content"] if part["type"] == "text"))[4]


def _judge(reply_column: int):
    def reply(body: dict) -> str:
        prompt = "\n".join(str(message["content"]) for message in body["messages"])
        return _row_of(prompt)[reply_column]

    return reply


def _run(bench: Path, out: Path, *judge_args: str, judge_replies: int | None = None) -> tuple[dict, list, list]:
    with recording_openai_server(_model_answer) as (model_url, model_requests), \
            recording_openai_server(_judge(judge_replies or 5), model="gpt-4o-mini") as (judge_url, judge_requests):
        judge = ["--judge-free"] if judge_replies is None else ["--judge-base-url", judge_url, *judge_args]
        code = main(["eval", "bench", "--dataset", str(bench), "--base-url", model_url, "--served-model", "stub",
                     "--concurrency", "4", "--out", str(out), *judge])
    assert code == 0
    asked = [request for request in model_requests if request.path.endswith("/chat/completions")]
    assert len(asked) == len(ROWS)
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    samples.sort(key=lambda sample: ROWS.index(_row_of(sample["question"])))  # written as they finished
    return results, samples, [request.body for request in judge_requests if request.path.endswith("/completions")]


def test_published_layout_loads_with_options_pictures_and_portable_ids(bench: Path, tmp_path: Path) -> None:
    items = load_bench(bench)
    assert [item.question_type for item in items] == [row[1] for row in ROWS]
    mcq = items[0].record
    assert mcq.options == ["Piazza Grande", "Colosseum", "Mole Antonelliana", "Rialto Bridge"]
    assert mcq.answer == "Piazza Grande" and mcq.question.endswith("Choose one option:")
    assert (mcq.lat, mcq.lon, mcq.image, mcq.source) == (43.467448, 11.885127, "MP16/DSCN0010.jpg", "MP16")
    assert items[0].image().size == (640, 480)  # the picture from file_name
    assert items[0].id == content_id("MCQ", ROWS[0][2], ROWS[0][3], "DSCN0010.jpg")
    elsewhere = tmp_path / "another" / "machine" / bench.name
    elsewhere.parent.mkdir(parents=True)
    shutil.copy(bench, elsewhere)
    assert [item.id for item in load_bench(elsewhere)] == [item.id for item in items]
    assert len({item.id for item in items}) == len(ROWS)


def test_judge_free_matches_option_text_and_yes_for_true(bench: Path, tmp_path: Path) -> None:
    results, samples, _ = _run(bench, tmp_path / "free")
    assert results["judge_free"] and results["scoring"] == "strict"
    # MCQ: "Piazza Grande" is option A (10), "B" is not C (0); TF: "yes" is True (10), "True." is not False (0)
    assert [sample["score"] for sample in samples[:4]] == [10.0, 0.0, 10.0, 0.0]
    scores = results["scores"]
    assert scores["MCQ"] == 50.0 and scores["TF"] == 50.0
    # SVQA / LVQA: one answer word for word the reference (similarity 1), one empty (0)
    assert scores["SVQA"] == pytest.approx(50.0, abs=0.01) and scores["LVQA"] == pytest.approx(50.0, abs=0.01)
    gaea = results["gaea"]["scores"]  # GAEA's arithmetic needs a judge's integers: none for similarities
    assert (gaea["MCQ"], gaea["TF"], gaea["SVQA"], gaea["LVQA"], gaea["overall"]) == (50.0, 50.0, None, None, None)


def test_strict_judge_counts_errors_and_gaea_arithmetic_truncates(bench: Path, tmp_path: Path) -> None:
    results, samples, judged = _run(bench, tmp_path / "strict", "--judge-model", "gpt-4o-mini", judge_replies=5)
    assert results["scoring"] == "strict" and results["judge"] == "llm:gpt-4o-mini"
    unreadable = samples[7]
    assert unreadable["score"] is None and len(unreadable["judge_replies"]) == 3  # asked again twice
    # strict: MCQ 10, 0 -> 50; TF 10, 0 -> 50; SVQA 7.5, 9.5 -> 85; LVQA 6.5 (the error left out) -> 65
    assert results["scores"] == pytest.approx({"MCQ": 50.0, "TF": 50.0, "SVQA": 85.0, "LVQA": 65.0,
                                               "overall": 62.5})
    assert results["scores_errors_as_zero"]["LVQA"] == pytest.approx(32.5)
    assert results["counts"]["LVQA"] == {"items": 2, "scored": 1, "errors": 1}
    assert results["errors"] == {"judge parse": 1}
    # GAEA's arithmetic on the same verdicts: SVQA 7.5 -> 7 and 9.5 -> 9 -> 80; LVQA 6.5 -> 6 -> 60
    assert results["gaea"]["scores"] == {"MCQ": 50.0, "TF": 50.0, "SVQA": 80.0, "LVQA": 60.0, "overall": 60.0}
    assert results["gaea"]["scored"] == {"MCQ": 2, "TF": 2, "SVQA": 2, "LVQA": 1}
    first = judged[0]["messages"]
    assert [message["role"] for message in first] == ["system", "user"] and "Reference answer:" in first[1]["content"]


def test_gaea_scoring_reproduces_gaeas_arithmetic(bench: Path, tmp_path: Path) -> None:
    results, samples, judged = _run(bench, tmp_path / "gaea", "--scoring", "gaea", judge_replies=6)
    assert results["scoring"] == "gaea" and results["judge"] == "llm:gpt-4o-mini"  # GAEA's judge by default
    assert results["config"]["judge_model"] == "gpt-4o-mini"
    assert len(judged) == len(ROWS)  # asked once each, as GAEA does
    assert all(body["model"] == "gpt-4o-mini" for body in judged)
    for body in judged:  # GAEA's instructions, alone in one system message
        (message,) = body["messages"]
        assert message["role"] == "system"
    svqa = next(body["messages"][0]["content"] for body in judged if ROWS[4][2] in body["messages"][0]["content"])
    assert svqa.startswith("Evaluate the following predicted answer by comparing it to the provided ground truth.")
    assert '**Ground Truth**: "Arezzo"\n**Model Prediction**: "Arezzo" ' in svqa
    mcq = next(body["messages"][0]["content"] for body in judged if ROWS[1][2].split("\n")[0] in body["messages"][0]
               ["content"])
    assert "\nC. Monte dei Paschi di Siena\nD. BBVA\nGround Truth: C. Monte dei Paschi di Siena\n" in mcq
    # GAEA: MCQ 10, 0 -> 50; TF 10, 0 -> 50; SVQA int(7.5) = 7 and int((10 + 9) / 2) = 9 -> 80;
    # LVQA 7 ("Score: 8" is no integer: left out) -> 70; overall (50 + 50 + 80 + 70) / 4
    assert results["gaea"]["scores"] == {"MCQ": 50.0, "TF": 50.0, "SVQA": 80.0, "LVQA": 70.0, "overall": 62.5}
    assert results["gaea"]["scored"] == {"MCQ": 2, "TF": 2, "SVQA": 2, "LVQA": 1}
    # strict arithmetic on the same replies: SVQA 7.5 and 9.75 -> 86.25; the unreadable one counted as an error
    assert results["scores"] == pytest.approx({"MCQ": 50.0, "TF": 50.0, "SVQA": 86.25, "LVQA": 70.0,
                                               "overall": 64.0625})
    assert results["errors"] == {"judge parse": 1}
    half = samples[4]
    assert (half["score"], half["gaea_score"]) == (7.5, 7)
    markdown = (tmp_path / "gaea" / "results.md").read_text()
    assert "GAEA's" in markdown and "| SVQA | 86.2 | 80.00 | 2 | 2 | 0 |" in markdown


def test_gaea_scoring_refuses_what_cannot_apply(bench: Path, tmp_path: Path, capsys) -> None:
    assert main(["eval", "bench", "--dataset", str(bench), "--base-url", "http://127.0.0.1:9/v1", "--judge-free",
                 "--scoring", "gaea", "--out", str(tmp_path / "a")]) == 2
    assert "GAEA's judge" in capsys.readouterr().err
    assert main(["eval", "bench", "--dataset", str(bench), "--base-url", "http://127.0.0.1:9/v1", "--scoring", "gaea",
                 "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-attempts", "3",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--judge-attempts cannot apply" in capsys.readouterr().err


@pytest.mark.parametrize(("qtype", "reply", "expected"), [
    ("SVQA", "{'Location_Prediction': 8, 'Specificity_and_Relevance': 7}", 7),  # 7.5 cut
    ("SVQA", '```json\n{"Location_Prediction": 9.9, "Specificity_and_Relevance": "6"}\n```', 7),  # (9 + 6) / 2
    ("SVQA", "{'Location_Prediction': 10, 'Specificity': 9, 'Relevance': 9}", 14),  # GAEA halves any sum
    ("SVQA", "{}", 0),
    ("SVQA", "{'Location_Prediction': '9.5', 'Specificity_and_Relevance': 9}", None),  # int('9.5') fails
    ("SVQA", "I would give it an 8.", None),
    ("LVQA", " 7\n", 7),
    ("LVQA", "7.5", None),
    ("MCQ", "Score: 10", None),
    ("TF", "0", 0),
])
def test_gaea_replies_are_read_as_gaeas_script_reads_them(qtype: str, reply: str, expected: int | None) -> None:
    from eval.judge import JudgeParseError, gaea_score_of, read_gaea_reply

    if expected is None:
        with pytest.raises(JudgeParseError):
            read_gaea_reply(reply, qtype)
    else:
        assert gaea_score_of(read_gaea_reply(reply, qtype), qtype) == expected
