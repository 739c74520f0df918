"""Loading GAEA-Bench-style QA data: the Hugging Face dataset `ucf-crcv/GAEA-Bench`, a local parquet / JSONL
file, a `datasets.save_to_disk` directory, or any directory made by `gaea data build` (a `qa.jsonl`).

Every item gets a stable unique id: its own `id`, else `gaea.records.stable_id(image, question)`, so that
two questions about the same photo stay two items (the upstream scripts keyed on the image file name).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gaea.errors import BadInputError
from gaea.io import read_jsonl
from gaea.models.hub import prepare_hub_dataset
from gaea.records import QARecord

log = logging.getLogger(__name__)

#: The question types GAEA-Bench scores (LOC records of our own datasets belong to `gaea eval geo`).
BENCH_TYPES = ("MCQ", "TF", "SVQA", "LVQA")
#: Columns that may name the image file when the `image` column holds the picture itself.
_IMAGE_NAME_COLUMNS = ("image_name", "file_name", "image_path", "img_id", "image_id", "filename")


@dataclass
class BenchItem:
    """One benchmark question with a way to get its image (a file, or a picture decoded on demand)."""

    record: QARecord
    image_source: Path | Callable[[], Image.Image] | None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def question_type(self) -> str:
        return self.record.question_type

    def image(self) -> Path | Image.Image | None:
        """The image as a path (files) or a PIL image (datasets with embedded pictures)."""
        if self.image_source is None or isinstance(self.image_source, Path):
            return self.image_source
        return self.image_source()


def parse_types(text: str | None) -> tuple[str, ...]:
    """`"MCQ,tf"` -> ("MCQ", "TF"); None or empty -> all bench types. Unknown names are a BadInputError."""
    if not text:
        return BENCH_TYPES
    types = tuple(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))
    unknown = [name for name in types if name not in BENCH_TYPES]
    if unknown:
        choices = ", ".join(BENCH_TYPES)
        raise BadInputError(f"--types: unknown question type(s) {', '.join(unknown)}; choose from {choices}")
    return types


def load_bench(
    source: str | Path, *, types: Iterable[str] = BENCH_TYPES, limit: int | None = None, split: str = "test"
) -> list[BenchItem]:
    """The benchmark items of `source`, filtered to `types`, at most `limit` of them, in dataset order.

    Parameters
    ----------
    source
        A Hugging Face dataset id (e.g. ``ucf-crcv/GAEA-Bench``), a ``.jsonl`` / ``.parquet`` file, a
        ``gaea data build`` directory (with ``qa.jsonl``), a ``save_to_disk`` directory, or a directory
        of parquet files.
    types
        Question types to keep.
    limit
        Keep only the first `limit` items (after filtering by type).
    split
        The split to read from a hub dataset or a ``DatasetDict`` on disk.

    Raises
    ------
    BadInputError
        When the source does not exist, has no usable rows, or a row lacks a required field.
    """
    wanted = set(types)
    items: list[BenchItem] = []
    skipped: dict[str, int] = {}
    for item in _items_of(source, split=split):
        if item.question_type not in wanted:
            skipped[item.question_type] = skipped.get(item.question_type, 0) + 1
            continue
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if skipped:
        log.info("left out question types not asked for: %s", skipped)
    if not items:
        raise BadInputError(f"{source}: no questions of type {', '.join(sorted(wanted))}")
    _make_ids_unique(items)
    return items


def _items_of(source: str | Path, *, split: str) -> Iterator[BenchItem]:
    path = Path(source)
    if path.is_dir() and (path / "qa.jsonl").exists():
        yield from _items_from_jsonl(path / "qa.jsonl")
    elif path.is_file() and path.suffix == ".jsonl":
        yield from _items_from_jsonl(path)
    elif path.exists():
        base_dir = path if path.is_dir() else path.parent
        yield from _items_from_dataset(_local_dataset(path, split=split), base_dir=base_dir)
    elif _looks_like_local_path(str(source)):
        raise BadInputError(f"{source}: no such file or directory")
    else:
        yield from _items_from_dataset(_hub_dataset(str(source), split=split), base_dir=None)


def _looks_like_local_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.endswith((".jsonl", ".parquet", ".json")) or text.count("/") != 1


def _items_from_jsonl(path: Path) -> Iterator[BenchItem]:
    for number, data in enumerate(read_jsonl(path), start=1):
        record = _record_of(data, where=f"{path}, line {number}")
        yield BenchItem(record, (path.parent / record.image) if record.image else None)


def _record_of(data: dict[str, Any], *, where: str) -> QARecord:
    try:
        return QARecord.from_dict(data)
    except BadInputError as error:
        raise BadInputError(f"{where}: {error}") from error


def _local_dataset(path: Path, *, split: str) -> Any:
    import datasets

    try:
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files=str(path), split="train")
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        parquet_files = sorted(str(file) for file in path.rglob("*.parquet"))
        if parquet_files:
            return datasets.load_dataset("parquet", data_files=parquet_files, split="train")
    except (OSError, ValueError, KeyError) as error:
        raise BadInputError(f"{path}: cannot read it as a dataset ({error})") from error
    raise BadInputError(f"{path}: not a dataset (expected qa.jsonl, parquet files or a save_to_disk directory)")


def _hub_dataset(name: str, *, split: str) -> Any:
    import datasets

    prepare_hub_dataset(name)
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as error:  # the hub client raises many unrelated types; all mean "cannot load it"
        raise BadInputError(f"{name}: cannot load this dataset from the Hugging Face hub ({error})") from error


def _items_from_dataset(dataset: Any, *, base_dir: Path | None) -> Iterator[BenchItem]:
    """Items of a `datasets.Dataset`; pictures stay undecoded until asked for, so memory stays flat."""
    import datasets

    image_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)]
    text_only = dataset.remove_columns(image_columns) if image_columns else dataset
    picture_column = image_columns[0] if image_columns else None
    raw_pictures = dataset.cast_column(picture_column, datasets.Image(decode=False)) if picture_column else None
    for index, row in enumerate(text_only):
        data = dict(row)
        data["image"] = _image_name(row, index)
        record = _record_of(data, where=f"row {index}")
        if picture_column is not None:
            yield BenchItem(record, _picture_loader(raw_pictures, index, picture_column))
        elif base_dir is not None and record.image:
            yield BenchItem(record, base_dir / record.image)
        else:
            yield BenchItem(record, None)


def _image_name(row: dict[str, Any], index: int) -> str:
    for column in ("image", *_IMAGE_NAME_COLUMNS):
        value = row.get(column)
        if isinstance(value, str) and value:
            return value
    return f"row-{index}"


def _picture_loader(dataset: Any, index: int, column: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        value = dataset[index][column]
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        from gaea.images import load_image

        return load_image(value["path"])

    return load


def _make_ids_unique(items: list[BenchItem]) -> None:
    """Give a repeated id (the same question asked twice of one photo) a deterministic `#n` suffix."""
    seen: dict[str, int] = {}
    for item in items:
        count = seen.get(item.record.id, 0) + 1
        seen[item.record.id] = count
        if count > 1:
            log.warning("id %s occurs %d times; numbering the repeat #%d", item.record.id, count, count)
            item.record.id = f"{item.record.id}#{count}"
