"""Exports (llava, messages, parquet), `gaea data stats`, and question rewriting through a real HTTP server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_data_pipeline import build, photo_folder, points_inside

from benchmarks._common import loopback_http_server
from data_pipeline.export import export_dataset
from data_pipeline.rewrite import QuestionRewriter, accept_paraphrase
from gaea.cli import main
from gaea.errors import BackendUnreachableError, BadInputError
from gaea.io import read_jsonl
from gaea.records import QARecord


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, shared_data: Path) -> Path:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    root = tmp_path_factory.mktemp("export")
    folder = photo_folder(shared_data / "photos", root / "photos", points_inside(extract, 4, seed=9))
    build(folder, root / "ds", extract, hf_dataset=False)
    return root / "ds"


def test_llava_export_matches_gaea_train(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "train.jsonl"
    records = list(read_jsonl(dataset / "qa.jsonl"))
    assert export_dataset(dataset, "llava", out) == len(records)
    rows = list(read_jsonl(out))
    for row, record in zip(rows, records, strict=True):
        assert set(row) == {"id", "image", "conversations"} and row["id"] == record["id"]
        human, gpt = row["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n" + record["question"])
        assert gpt["from"] == "gpt" and gpt["value"].endswith(record["answer"])
        assert (out.parent / row["image"]).resolve() == (dataset / record["image"]).resolve()
    mcq_row, mcq = next((row, r) for row, r in zip(rows, records, strict=True) if r["options"])
    letter = "ABCD"[mcq["options"].index(mcq["answer"])]
    prompt, answer = (turn["value"] for turn in mcq_row["conversations"])
    assert f"\n{letter}. {mcq['answer']}\n" in prompt and answer == f"{letter}. {mcq['answer']}"


def test_messages_export_is_trl_conversational(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "messages.jsonl"
    export_dataset(dataset, "messages", out)
    row = next(iter(read_jsonl(out)))
    user, assistant = row["messages"]
    assert user["role"] == "user" and user["content"][0] == {"type": "image"}
    assert user["content"][1]["type"] == "text" and assistant["role"] == "assistant"
    assert len(row["images"]) == 1 and (out.parent / row["images"][0]).is_file()


def test_parquet_export_embeds_the_images(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "qa.parquet"
    count = main(["data", "export", "--in", str(dataset), "--format", "parquet", "--out", str(out)])
    assert count == 0
    table = pq.read_table(out)
    records = list(read_jsonl(dataset / "qa.jsonl"))
    assert table.num_rows == len(records)
    image = table.column("image")[0].as_py()
    assert image["bytes"][:2] == b"\xff\xd8"  # JPEG bytes inside the file, not a path
    assert table.column("question_type").to_pylist() == [r["question_type"] for r in records]


def test_stats_command_prints_counts(dataset: Path, capsys) -> None:
    assert main(["data", "stats", str(dataset), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    records = list(read_jsonl(dataset / "qa.jsonl"))
    assert stats["records"] == len(records) and stats["photos"] == 4
    assert stats["tf_true"] == stats["tf_false"]
    assert stats["skipped"] == {"bad_coordinates": 1, "corrupt": 1, "empty_gps": 1, "no_gps": 1, "not_an_image": 1}
    assert main(["data", "stats", str(dataset)]) == 0
    assert "TF balance" in capsys.readouterr().out


def test_export_of_a_non_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no qa.jsonl"):
        export_dataset(tmp_path, "llava", tmp_path / "x.jsonl")


@pytest.mark.parametrize("fmt", ["llava", "parquet"])
def test_export_of_an_empty_dataset_is_an_error_and_writes_nothing(tmp_path: Path, fmt: str, capsys) -> None:
    (tmp_path / "qa.jsonl").write_text("")
    assert main(["data", "export", "--in", str(tmp_path), "--format", fmt, "--out", str(tmp_path / "x")]) == 2
    assert "holds no record" in capsys.readouterr().err and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------- rewriting


class _Paraphraser(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint with canned paraphrases: it prefixes the question, and for
    questions mentioning "kind of place" it drops the quoted name (a paraphrase that loses a fact)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        question = body["messages"][-1]["content"].split(":\n", 1)[1]
        reply = "What sort of place is that?" if "kind of place" in question else f"Tell me this: {question}"
        payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop"}]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def paraphraser() -> Iterator[ThreadingHTTPServer]:
    with loopback_http_server(_Paraphraser) as server:
        server.requests = []
        yield server


def test_rewrite_paraphrases_questions_and_keeps_answers(tmp_path, shared_data: Path, paraphraser) -> None:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", points_inside(extract, 3, seed=4), bad=False)
    plain, _ = build(folder, tmp_path / "plain", extract, hf_dataset=False)
    url = f"http://127.0.0.1:{paraphraser.server_address[1]}/v1"
    rewritten, _ = build(folder, tmp_path / "rewritten", extract, hf_dataset=False,
                         rewrite_base_url=url, rewrite_model="paraphraser")
    assert len(paraphraser.requests) == len(plain)
    assert all(request["model"] == "paraphraser" for request in paraphraser.requests)
    for before, after in zip(plain, rewritten, strict=True):
        unchanged = [key for key in before if key != "question"]
        assert [before[key] for key in unchanged] == [after[key] for key in unchanged]
        if "kind of place" in before["question"]:
            assert after["question"] == before["question"]  # the paraphrase lost the quoted name: rejected
        elif before["question_type"] == "TF":
            assert after["question"] == "True or false: Tell me this: " + before["question"].split(": ", 1)[1]
        else:
            assert after["question"] == "Tell me this: " + before["question"]


def test_paraphrase_acceptance_rules() -> None:
    original = 'What kind of place is "Shorey House", about 230 m from here?'
    assert accept_paraphrase(original, 'Tell me what "Shorey House", some 230 m away, is.') is not None
    assert accept_paraphrase(original, "What is that place 230 m away?") is None
    assert accept_paraphrase(original, "") is None
    assert accept_paraphrase(original, original) is None
    assert accept_paraphrase(original, '"Shorey House" 230 ' + "blah " * 200) is None


def test_an_unreachable_rewrite_server_stops_the_build_with_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("GAEA_HTTP_RETRIES", "0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rewriter = QuestionRewriter(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    record = QARecord("r1", "a.jpg", "In which country was this photo taken?", "Italy", "SVQA")
    with pytest.raises(BackendUnreachableError):
        rewriter([record])


def test_rewrite_through_a_real_transformers_serve(dataset: Path, tiny_vlm: Path) -> None:
    from tests.servers import transformers_serve

    records = [QARecord.from_dict(row) for row in list(read_jsonl(dataset / "qa.jsonl"))[:3]]
    with transformers_serve(tiny_vlm) as base_url:
        rewriter = QuestionRewriter(base_url=base_url, model=str(tiny_vlm), threads=2)
        rewriter.params.max_new_tokens = 24
        rewritten = rewriter(records)
    assert len(rewritten) == len(records)
    for before, after in zip(records, rewritten, strict=True):
        assert replace(after, question=before.question) == before
        # A random tiny model rarely keeps every fact; whatever it says, a kept paraphrase keeps them.
        if after.question != before.question:
            assert accept_paraphrase(before.question, after.question) is not None
