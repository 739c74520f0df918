"""Loading GAEA-Bench-style QA data from any dataset source of `gaea.sources`: the hub's
``hf:ucf-crcv/GAEA-Bench``, a local parquet / JSONL file, a `datasets.save_to_disk` directory, or any
directory made by `gaea data build` (a `qa.jsonl`).

Every item gets a unique id that is the same on every machine: its own `id`, else `gaea.records.content_id`
(a hash of its type, question, answer and image file name), so that two questions about the same photo stay
two items (the upstream scripts keyed on the image file name). Rows are read by `gaea.records.QARecord.from_dict`,
which reads GAEA-Bench's published layout (options inside the question, lettered answers, yes / no).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gaea.errors import BadInputError
from gaea.records import QARecord
from gaea.sources import ImageRef, Row, Skipped, open_source

log = logging.getLogger(__name__)

#: The question types GAEA-Bench scores (LOC records of our own datasets belong to `gaea eval geo`).
BENCH_TYPES = ("MCQ", "TF", "SVQA", "LVQA")
#: Columns that may name the image file when the `image` column holds the picture itself.
_IMAGE_NAME_COLUMNS = ("image_name", "file_name", "image_path", "img_id", "image_id", "filename")


@dataclass
class BenchItem:
    """One benchmark question with where its image is (a file, or a picture in a dataset)."""

    record: QARecord
    image_source: ImageRef | None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def question_type(self) -> str:
        return self.record.question_type

    def image(self) -> Path | Image.Image | None:
        """The image as a path (files, opened by whoever reads them) or a PIL image (a dataset's picture,
        through the image gate: a bad one raises PhotoRejected)."""
        if self.image_source is None:
            return None
        if self.image_source.path is not None:
            return Path(self.image_source.path)
        return self.image_source.load(name=f"the picture of {self.record.id}")


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


def load_bench(source: str | Path, *, types: Iterable[str] = BENCH_TYPES, limit: int | None = None) -> list[BenchItem]:
    """The benchmark items of `source`, filtered to `types`, at most `limit` of them, in dataset order.

    Parameters
    ----------
    source
        Any dataset spec of `gaea.sources`: ``hf:ucf-crcv/GAEA-Bench`` (the ``test`` split unless
        another is named), a ``.jsonl`` / ``.parquet`` file, a ``gaea data build`` folder, a
        ``save_to_disk`` folder (``DIR[:SPLIT]``) or a folder of parquet files.
    types
        Question types to keep.
    limit
        Keep only the first `limit` items (after filtering by type).

    Rows that are not questions (a field missing, an unknown type, a bad line) are left out, each with a
    warning that says where and why, and counted.

    Raises
    ------
    BadInputError
        When the source cannot be opened or has no question of the types asked for.
    """
    wanted = set(types)
    items: list[BenchItem] = []
    other_types: Counter[str] = Counter()
    bad: list[str] = []
    for row in open_source(source, default_split="test").rows():
        item = _item_of(row)
        if isinstance(item, str):
            bad.append(item)
            log.warning("left out %s", item)
        elif item.question_type not in wanted:
            other_types[item.question_type] += 1
        else:
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
    if other_types:
        log.info("left out question types not asked for: %s", dict(other_types))
    if bad:
        log.warning("%d rows of %s are not questions and were left out", len(bad), source)
    if not items:
        raise BadInputError(f"{source}: no questions of type {', '.join(sorted(wanted))}"
                            + (f" ({len(bad)} rows left out, the first: {bad[0]})" if bad else ""))
    _make_ids_unique(items)
    return items


def _item_of(row: Row | Skipped) -> BenchItem | str:
    """The item of one row, or what is wrong with the row."""
    if isinstance(row, Skipped):
        return row.detail
    data = dict(row.fields)
    data["image"] = _image_name(row)
    try:
        record = QARecord.from_dict(data)
    except BadInputError as error:
        return f"{row.where}: {error}"
    return BenchItem(record, row.image)


def _image_name(row: Row) -> str:
    """How the item names its photo: the path the row gives, else a name column, else the row itself."""
    for column in ("image", *_IMAGE_NAME_COLUMNS):
        value = row.fields.get(column)
        if isinstance(value, str) and value:
            return value
    return row.where


def _make_ids_unique(items: list[BenchItem]) -> None:
    """Give a repeated id (the same question asked twice of one photo) a deterministic `#n` suffix."""
    seen: dict[str, int] = {}
    for item in items:
        count = seen.get(item.record.id, 0) + 1
        seen[item.record.id] = count
        if count > 1:
            log.warning("id %s occurs %d times; numbering the repeat #%d", item.record.id, count, count)
            item.record.id = f"{item.record.id}#{count}"
