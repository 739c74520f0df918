"""Exports of a built dataset: LLaVA conversations (as GAEA-Train), chat messages (as TRL trains on),
parquet with the images inside, and a Hugging Face dataset saved with `save_to_disk`.

Every export streams `qa.jsonl`, so none holds the whole dataset in memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gaea.errors import BadInputError
from gaea.io import atomic_write_jsonl, read_jsonl
from gaea.records import QARecord, render

FORMATS = ("llava", "messages", "parquet")


def dataset_records(dataset_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a dataset directory made by `gaea data build`."""
    path = Path(dataset_dir) / "qa.jsonl"
    if not path.exists():
        raise BadInputError(f"{dataset_dir}: no qa.jsonl here (is it a directory made by `gaea data build`?)")
    return read_jsonl(path)


def llava_row(record: QARecord, image: str) -> dict[str, Any]:
    """One record in the LLaVA conversation format of GAEA-Train (the user turn and target of `render`)."""
    rendered = render(record)
    return {
        "id": record.id,
        "image": image,
        "conversations": [{"from": "human", "value": f"<image>\n{rendered.prompt}"},
                          {"from": "gpt", "value": rendered.target}],
    }


def messages_row(record: QARecord, image: str) -> dict[str, Any]:
    """One record in the conversational format with images that TRL's SFTTrainer reads."""
    rendered = render(record)
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": rendered.prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": rendered.target}]},
        ],
        "images": [image],
    }


def export_dataset(dataset_dir: str | Path, fmt: str, out_file: str | Path) -> int:
    """Write the dataset in `fmt` to `out_file` (atomically); return the number of rows.

    Image paths in the llava and messages exports are relative to the folder of `out_file`.
    """
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    dataset_dir, out_file = Path(dataset_dir), Path(out_file)
    if next(dataset_records(dataset_dir), None) is None:  # an empty training file would only fail later
        raise BadInputError(f"{dataset_dir}: the dataset holds no record (see its skipped.jsonl); nothing exported")
    if fmt == "parquet":
        return _export_parquet(dataset_dir, out_file)
    make_row = llava_row if fmt == "llava" else messages_row
    base = out_file.parent.resolve()
    records = (QARecord.from_dict(data) for data in dataset_records(dataset_dir))
    rows = (make_row(record, os.path.relpath(dataset_dir / record.image, base)) for record in records)
    return atomic_write_jsonl(out_file, rows)


# ---------------------------------------------------------------------------------------------- HF / parquet


def hf_features() -> Any:
    """The Hugging Face schema of a record: its fields, the image embedded, evidence as a JSON string."""
    import datasets

    return datasets.Features({"image": datasets.Image(), **_record_features()})


def hf_photo_features() -> Any:
    """The schema of `hf/`: one row per distinct image (by content), its records in a list."""
    import datasets

    record = _record_features()
    record["image"] = datasets.Value("string")  # the path in qa.jsonl; the picture is the row's
    return datasets.Features({"image": datasets.Image(), "records": datasets.List(record)})


def _record_features() -> dict[str, Any]:
    import datasets

    return {
        "id": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "question_type": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "lat": datasets.Value("float64"),
        "lon": datasets.Value("float64"),
        "location": datasets.Value("string"),
        "source": datasets.Value("string"),
        "evidence": datasets.Value("string"),
    }


def _hf_record(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["options"] = record.get("options") or []
    # Evidence mixes OSM elements and context facts with different keys: one JSON string keeps it exact.
    row["evidence"] = json.dumps(record.get("evidence") or [], ensure_ascii=False)
    return row


def _hf_rows(dataset_dir: str) -> Iterator[dict[str, Any]]:
    root = Path(dataset_dir)
    for record in dataset_records(root):
        row = _hf_record(record)
        row["image"] = {"bytes": (root / record["image"]).read_bytes(), "path": record["image"]}
        yield row


def _hf_photo_rows(dataset_dir: str) -> Iterator[dict[str, Any]]:
    """One row per distinct image content, with every record about it, in order of first appearance.

    A first pass keeps only where each record starts in qa.jsonl, grouped by the digest of its image, so
    memory holds offsets, not records.
    """
    root = Path(dataset_dir)
    groups: dict[str, list[int]] = {}
    digests: dict[str, str] = {}
    with open(root / "qa.jsonl", "rb") as handle:
        for offset, record in _records_with_offsets(handle):
            image = record["image"]
            if image not in digests:
                digests[image] = hashlib.sha256((root / image).read_bytes()).hexdigest()
            groups.setdefault(digests[image], []).append(offset)
        for offsets in groups.values():
            records = [json.loads(_line_at(handle, offset)) for offset in offsets]
            picture = {"bytes": (root / records[0]["image"]).read_bytes(), "path": records[0]["image"]}
            yield {"image": picture, "records": [_hf_record(record) for record in records]}


def _records_with_offsets(handle: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    while True:
        offset = handle.tell()
        line = handle.readline()
        if not line:
            return
        if line.strip():
            yield offset, json.loads(line)


def _line_at(handle: BinaryIO, offset: int) -> bytes:
    handle.seek(offset)
    return handle.readline()


def _hf_dataset(dataset_dir: Path, cache_dir: str, *, by_photo: bool = False) -> Any:
    import datasets

    datasets.disable_progress_bars()
    features = hf_photo_features() if by_photo else hf_features()
    if next(iter(dataset_records(dataset_dir)), None) is None:  # from_generator refuses to make zero rows
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.Dataset.from_generator(
        _hf_photo_rows if by_photo else _hf_rows, features=features, cache_dir=cache_dir,
        gen_kwargs={"dataset_dir": str(dataset_dir)},
        # The generator reads files whose content the fingerprint cannot see: never reuse a cached build.
        fingerprint=os.urandom(8).hex(),
    )


def save_hf_dataset(dataset_dir: str | Path, target: str | Path) -> Path:
    """Save the dataset as a Hugging Face dataset (`datasets.load_from_disk(target)`): one row per distinct
    image, stored once, with the records about it in `records`.

    The copy is staged in a `.hf-*` folder beside; one left by an interrupted run is removed first.
    """
    dataset_dir, target = Path(dataset_dir), Path(target)
    for stale in dataset_dir.glob(".hf-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=dataset_dir, prefix=".hf-") as tmp:
        dataset = _hf_dataset(dataset_dir, cache_dir=os.path.join(tmp, "cache"), by_photo=True)
        staged = Path(tmp) / "saved"
        # An empty dataset needs its shard count spelled out (datasets cannot size zero shards).
        dataset.save_to_disk(str(staged), num_shards=None if len(dataset) else 1)
        del dataset
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def _export_parquet(dataset_dir: Path, out_file: Path) -> int:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=".parquet-") as tmp:
        dataset = _hf_dataset(dataset_dir, cache_dir=os.path.join(tmp, "cache"))
        staged = os.path.join(tmp, out_file.name)
        dataset.to_parquet(staged)
        count = len(dataset)
        del dataset
        os.replace(staged, out_file)
    return count
