"""Training samples from every accepted layout: `gaea data build` folders, their llava / messages exports,
and Hugging Face datasets (GAEA-Train conversations, or the records with images that the build saves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune.data import load_samples, split_train_eval
from gaea.errors import BadInputError
from gaea.records import INSTRUCTIONS, QARecord
from gaea.sources import ImageRef

PHOTOS = ["DSCN0010.jpg", "DSCN0021.jpg", "Kodak_CX7530.jpg"]


def write_record_dataset(out: Path, photos_dir: Path) -> Path:
    """A dataset folder as `gaea data build` lays it out: qa.jsonl of QARecords, images relative to it."""
    (out / "images").mkdir(parents=True)
    records = []
    for name in PHOTOS:
        shutil.copy(photos_dir / name, out / "images" / name)
        records.append(QARecord(id=f"loc-{name}", image=f"images/{name}", question="Where was this photo taken?",
                                answer=f"Taken at {name}.", question_type="LOC"))
    records.append(QARecord(id="mcq-1", image=f"images/{PHOTOS[0]}", question="Which is closest?",
                            answer="cafe", question_type="MCQ", options=["school", "cafe", "museum"]))
    (out / "qa.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    return out


@pytest.fixture()
def dataset_dir(tmp_path, photos_dir):
    return write_record_dataset(tmp_path / "ds", photos_dir)


def _user_text(sample) -> str:
    return next(p["text"] for m in sample.messages if m["role"] == "user" for p in m["content"] if p["type"] == "text")


def _answer(sample) -> str:
    return sample.messages[-1]["content"][0]["text"]


def test_build_folder_gives_one_conversation_per_record_as_rendered(dataset_dir):
    samples = load_samples(dataset_dir)
    assert len(samples) == 4
    first = samples[0]
    assert [m["role"] for m in first.messages] == ["user", "assistant"]
    assert first.messages[0]["content"][0] == {"type": "image"}
    assert _user_text(first) == f"Where was this photo taken?\n{INSTRUCTIONS['LOC']}"
    assert Path(first.images[0]) == dataset_dir / "images" / PHOTOS[0] and Path(first.images[0]).is_file()
    mcq = samples[3]
    assert _user_text(mcq) == f"Which is closest?\nA. school\nB. cafe\nC. museum\n{INSTRUCTIONS['MCQ']}"
    assert _answer(mcq) == "B. cafe"


def test_system_prompt(dataset_dir):
    sample = load_samples(dataset_dir, system_prompt="You are GAEA.")[0]
    assert sample.messages[0] == {"role": "system", "content": [{"type": "text", "text": "You are GAEA."}]}
    assert _user_text(sample).startswith("Where was this photo taken?\n")


@pytest.mark.parametrize("fmt", ["llava", "messages"])
def test_exports_of_gaea_data_load_like_the_folder(dataset_dir, tmp_path, fmt):
    from data_pipeline.export import export_dataset

    out = tmp_path / "exports" / f"{fmt}.jsonl"
    assert export_dataset(dataset_dir, fmt, out) == 4
    samples = load_samples(out)
    assert len(samples) == 4
    assert all(Path(s.images[0]).resolve().is_file() for s in samples)
    assert Path(samples[1].images[0]).resolve() == (dataset_dir / "images" / PHOTOS[1]).resolve()
    assert _answer(samples[0]) == "Taken at DSCN0010.jpg."
    assert sum(p["type"] == "image" for p in samples[0].messages[0]["content"]) == 1
    assert _answer(samples[3]) == "B. cafe"


def test_hf_dataset_in_gaea_train_layout(tmp_path, photos_dir):
    import datasets

    rows = {
        "id": ["a", "b"],
        "image": [str(photos_dir / PHOTOS[0]), str(photos_dir / PHOTOS[1])],
        "conversations": [
            [{"from": "human", "value": "<image>\nWhere is this?"}, {"from": "gpt", "value": "Arezzo"}],
            [{"from": "human", "value": "<image>\nCountry?"}, {"from": "gpt", "value": "Kenya"},
             {"from": "human", "value": "Continent?"}, {"from": "gpt", "value": "Africa"}],
        ],
    }
    saved = tmp_path / "gaea-train"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).save_to_disk(str(saved))
    samples = load_samples(saved)
    assert len(samples) == 2
    second = samples[1]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user", "assistant"]
    assert second.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Country?"}]
    assert isinstance(second.images[0], ImageRef) and second.images[0].load(name="x").width > 0


def test_hf_copy_saved_by_the_build_loads_as_records(dataset_dir, tmp_path):
    from data_pipeline.export import save_hf_dataset

    saved = save_hf_dataset(dataset_dir, tmp_path / "hf")
    samples = load_samples(saved)
    # hf/ keeps each photo once with its records: the MCQ about the first photo comes second.
    assert len(samples) == 4 and samples[1].id == "mcq-1" and _answer(samples[1]) == "B. cafe"
    assert _user_text(samples[1]) == _user_text(load_samples(dataset_dir)[3])
    assert samples[0].images[0] == samples[1].images[0]
    assert isinstance(samples[0].images[0], ImageRef) and samples[0].images[0].load(name="x").width > 0


def test_bad_inputs_are_named(tmp_path, dataset_dir):
    with pytest.raises(BadInputError, match="no such file or folder"):
        load_samples(tmp_path / "nowhere.jsonl")
    (dataset_dir / "images" / PHOTOS[2]).unlink()
    kept = load_samples(dataset_dir)  # the record whose image is gone is left out, with a warning
    assert len(kept) == 3 and all(PHOTOS[2] not in sample.images[0] for sample in kept)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"image": "x.jpg", "conversations": [{"from": "human", "value": "no image tag"},
                                                                     {"from": "gpt", "value": "a"}]}) + "\n")
    with pytest.raises(BadInputError, match="0 image placeholder\\(s\\) but 1 image"):
        load_samples(broken)
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(BadInputError, match="no assistant turn"):
        load_samples(no_answer)


def test_held_out_split_is_deterministic_and_disjoint(dataset_dir):
    samples = load_samples(dataset_dir)
    train, held = split_train_eval(samples, eval_ratio=0.25, seed=3)
    again, held_again = split_train_eval(samples, eval_ratio=0.25, seed=3)
    assert list(held.indices) == list(held_again.indices) and len(held) == 1 and len(train) == 3
    assert not set(train.indices) & set(held.indices)
    assert split_train_eval(samples, eval_ratio=0.0, seed=3) == (samples, None)
