"""Runs spread over several machines: `gaea eval` over replicas of one model server (several --base-url)."""

from __future__ import annotations

import json
from pathlib import Path

from gaea.cli import main
from tests.servers import recording_openai_server

PHOTOS = ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "Kodak_CX7530.jpg")


def _bench_dataset(directory: Path, photos_dir: Path) -> Path:
    """A GAEA-Bench-style qa.jsonl of 16 true / false questions about the shared photos."""
    directory.mkdir(parents=True)
    records = [{"image": str(photos_dir / photo), "question": f"Is this photo {n} taken in Italy?", "answer": "Yes",
                "question_type": "TF"} for photo in PHOTOS for n in range(4)]
    (directory / "qa.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return directory


def _chat_requests(requests: list) -> int:
    return sum(1 for request in requests if request.path.startswith("/v1/chat/completions"))


def test_eval_bench_over_two_replicas_uses_both_and_scores_every_item_once(tmp_path, photos_dir, capsys):
    dataset = _bench_dataset(tmp_path / "dataset", photos_dir)
    out = tmp_path / "run"
    with recording_openai_server("Yes") as (first, first_requests), \
            recording_openai_server("Yes") as (second, second_requests):
        code = main(["eval", "bench", "--dataset", str(dataset), "--base-url", first, "--base-url", second,
                     "--judge-free", "--out", str(out), "--concurrency", "4"])
    assert code == 0, capsys.readouterr().err
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    ids = [sample["id"] for sample in samples]
    assert len(ids) == len(set(ids)) == 16
    assert all(sample["score"] == 10.0 and sample["error"] is None for sample in samples)
    asked = _chat_requests(first_requests), _chat_requests(second_requests)
    assert sum(asked) == 16 and min(asked) >= 4, asked  # both replicas answered, no item was asked twice
    assert json.loads((out / "results.json").read_text())["model"] == "stub"
