"""Every way geotagged photos and datasets come in, read by one function: `open_source(spec)`.

===========================================  ====================================================================
spec                                         what it is
===========================================  ====================================================================
``DIR``                                      a folder of photos, searched recursively; positions from EXIF GPS
``FILE.csv`` / ``FILE.tsv``                  a manifest: a header, then one photo per row (path, lat, lon, id)
``FILE.jsonl`` / ``.ndjson``, ``FILE.json``  the same as JSON lines or a JSON list (or QA records, conversations)
``DIR`` holding ``qa.jsonl``                 a dataset made by `gaea data build`
``FILE.parquet``, ``DIR`` of parquet files   parquet (`gaea data export --format parquet`, a hub snapshot)
``DIR[:SPLIT]`` made by ``save_to_disk``     a `datasets` Dataset or DatasetDict
``hf:OWNER/NAME[:SPLIT]``                    a dataset on the Hugging Face hub
===========================================  ====================================================================

Without ``:SPLIT`` a DatasetDict or hub dataset gives its only split, else the caller's default (``train``
to build and train, ``test`` to evaluate), else an error that lists its splits.

Columns are matched case-insensitively: the image by one of `PATH_COLUMNS` (or a picture column of a
dataset), the position by `LAT_COLUMNS` and `LON_COLUMNS`, the photo's name by `ID_COLUMNS`.

Reading never stops at a bad row: each becomes a `Skipped` with a reason, in order among the good rows.
File names are bytes-safe (names that are not UTF-8 are opened as they are and reported readably), and
images are opened only through the gate of `gaea.images`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gaea.errors import BadInputError, PhotoRejected
from gaea.exif import check_coordinates, gps_of_open_image
from gaea.images import IMAGE_SUFFIXES, ImageSource, load_image, open_image
from gaea.io import BadLine, jsonl_lines, readable_name

log = logging.getLogger(__name__)

HUB_PREFIX = "hf:"
PATH_COLUMNS = ("path", "file", "file_name", "filename", "filepath", "image", "image_path", "img")
LAT_COLUMNS = ("lat", "latitude", "gps_lat")
LON_COLUMNS = ("lon", "lng", "long", "longitude", "gps_lon")
ID_COLUMNS = ("id", "photo_id", "image_id", "img_id")
#: How every command's help names an input (the table above, in one line).
SPEC_HELP = ("a folder of photos (GPS from EXIF), a .csv / .jsonl manifest (path, lat, lon), a `gaea data build` "
             "folder, parquet, a save_to_disk folder (DIR[:SPLIT]) or a hub dataset (hf:OWNER/NAME[:SPLIT])")
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_BATCH = 1000


@dataclass(frozen=True)
class ImageRef:
    """Where a row's picture is: a file (`path`), or a cell of a dataset (`dataset`, `row`, `column`).

    It is small and picklable (worker processes reopen the dataset once each), and opens only through
    the image gate.
    """

    path: str | None = None
    dataset: tuple[str, str, str | None] | None = None
    row: int = -1
    column: str = ""

    def raw(self, *, name: str) -> ImageSource:
        """What the gate takes: the file's path, or the encoded bytes in the dataset."""
        if self.path is not None:
            return self.path
        try:
            cell = _undecoded(self.dataset, self.column)[self.row][self.column]
        except Exception as error:  # arrow raises many types for a damaged cell; all mean "unreadable"
            raise PhotoRejected("corrupt", f"{name}: the picture cannot be read ({error})") from error
        if cell and cell.get("bytes"):
            return cell["bytes"]
        if cell and cell.get("path"):
            return cell["path"]
        raise PhotoRejected("missing", f"{name}: the row holds no picture")

    @contextmanager
    def open(self, *, name: str) -> Iterator[Image.Image]:
        """The picture opened through the gate (pixels not decoded yet)."""
        with open_image(self.raw(name=name), name=name) as image:
            yield image

    def load(self, *, name: str) -> Image.Image:
        """The picture decoded as RGB, through the gate."""
        return load_image(self.raw(name=name), name=name)


@dataclass(frozen=True)
class Row:
    """One row of a source: where it is, its columns other than pictures, and its picture if it has one."""

    where: str
    fields: dict[str, Any]
    image: ImageRef | None = None
    #: The stable name of the row's picture: a path relative to a folder, a path as a manifest writes it,
    #: or "NAME[i]" for a picture stored in a dataset.
    photo: str = ""


@dataclass(frozen=True)
class Skipped:
    """A row or photo left out, with a reason code (see `gaea.errors.PhotoRejected`) and what was wrong."""

    key: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"photo": self.key, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Source:
    """An opened spec: its kind and where it is. `rows()` reads it; nothing is read before."""

    spec: str
    kind: str  # folder, csv, jsonl, json, records, parquet, saved, hub
    target: str  # the absolute path of the file or folder, or the hub dataset's OWNER/NAME
    split: str | None = None
    name: str = ""
    base: Path | None = None

    @property
    def identity(self) -> str:
        """What names this input in a run's fingerprint: a spec that opens it again from anywhere (the path
        made absolute, the split chosen)."""
        prefix = HUB_PREFIX if self.kind == "hub" else ""
        return readable_name(f"{prefix}{self.target}" + (f":{self.split}" if self.split else ""))

    def rows(self) -> Iterator[Row | Skipped]:
        """Every row in order; a row that cannot be read is a `Skipped` in its place."""
        if self.kind == "folder":
            yield from _folder_rows(Path(self.target))
        elif self.kind == "csv":
            yield from _csv_rows(Path(self.target), self.base)
        elif self.kind in ("jsonl", "records"):
            yield from _jsonl_rows(self._jsonl_file(), self.base)
        elif self.kind == "json":
            yield from _json_rows(Path(self.target), self.base)
        else:
            yield from _dataset_rows((self.kind, self.target, self.split), self.name, self.base)

    def _jsonl_file(self) -> Path:
        return Path(self.target) / "qa.jsonl" if self.kind == "records" else Path(self.target)


# ---------------------------------------------------------------------------------------------- opening


def open_source(spec: str | os.PathLike, *, default_split: str = "train") -> Source:
    """The source `spec` names (see the module docstring for the kinds); it is not read yet.

    Raises
    ------
    BadInputError
        When nothing is there, it is of no known kind, or a DatasetDict's split is not clear.
    """
    text = os.fspath(spec)
    if text.startswith(HUB_PREFIX):
        return _hub_source(text, default_split)
    path = Path(text)
    if not os.path.lexists(text):
        prefix, _, split = text.rpartition(":")
        if prefix and (Path(prefix) / "dataset_dict.json").is_file():
            return _saved_source(text, Path(prefix), split, default_split)
        hint = f"; a Hugging Face hub dataset is written {HUB_PREFIX}{text}" if text.count("/") == 1 else ""
        raise BadInputError(f"{readable_name(text)}: no such file or folder{hint}")
    if path.is_dir():
        return _folder_source(text, path, default_split)
    suffix = path.suffix.lower()
    kinds = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
             ".parquet": "parquet"}
    if suffix not in kinds:
        raise BadInputError(f"{readable_name(text)}: expected a folder of photos, a .csv / .jsonl / .json manifest, "
                            f"a .parquet file, a dataset folder or {HUB_PREFIX}OWNER/NAME[:SPLIT]")
    return Source(text, kinds[suffix], str(path.resolve()), name=path.name, base=path.resolve().parent)


def _folder_source(text: str, path: Path, default_split: str) -> Source:
    absolute = path.resolve()
    if any((path / marker).is_file() for marker in _SAVED_MARKERS):
        return _saved_source(text, path, None, default_split)
    if (path / "qa.jsonl").is_file():
        return Source(text, "records", str(absolute), name=path.name, base=absolute)
    if _parquet_files(absolute):
        return Source(text, "parquet", str(absolute), name=path.name, base=absolute)
    return Source(text, "folder", str(absolute), name=path.name, base=absolute)


def _parquet_files(path: Path) -> list[str]:
    """A parquet file itself, or the parquet files of a folder (down to where hub snapshots keep them)."""
    if path.is_file():
        return [str(path)]
    return sorted(str(p) for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet") for p in path.glob(pattern))


def _saved_source(text: str, path: Path, split: str | None, default_split: str) -> Source:
    absolute = path.resolve()
    dict_file = path / "dataset_dict.json"
    if dict_file.is_file():
        try:
            splits = list(json.loads(dict_file.read_text(encoding="utf-8"))["splits"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BadInputError(f"{readable_name(str(dict_file))}: not a readable DatasetDict ({error})") from error
        split = choose_split(splits, split, default_split, spec=str(path))
    elif split:
        raise BadInputError(f"{readable_name(str(path))}: a single dataset has no split {split!r}")
    return Source(text, "saved", str(absolute), split, name=path.name, base=absolute)


def _hub_source(text: str, default_split: str) -> Source:
    name, _, split = text[len(HUB_PREFIX):].partition(":")
    if name.count("/") != 1 or not all(name.split("/")):
        raise BadInputError(f"{text}: a hub dataset is written {HUB_PREFIX}OWNER/NAME[:SPLIT]")
    from gaea.models.hub import prepare_hub_dataset

    prepare_hub_dataset(name)  # out of reach and not cached: one line within seconds, not minutes of retries
    if not split:
        split = choose_split(_hub_splits(name), None, default_split, spec=text)
    return Source(text, "hub", name, split, name=name.split("/")[1])


def _hub_splits(name: str) -> list[str]:
    import datasets

    try:
        return list(datasets.get_dataset_split_names(name))
    except Exception as error:  # the hub client raises many unrelated types; all mean "cannot load it"
        raise BadInputError(f"{HUB_PREFIX}{name}: cannot open this Hugging Face hub dataset ({error})") from error


def choose_split(splits: list[str], wanted: str | None, default: str, *, spec: str) -> str:
    """The split to read: the one asked for, else the only one, else `default`; else say which exist."""
    if wanted:
        if wanted not in splits:
            raise BadInputError(f"{readable_name(spec)}: no split {wanted!r} (it has {', '.join(splits)})")
        return wanted
    if len(splits) == 1:
        return splits[0]
    if default in splits:
        return default
    raise BadInputError(f"{readable_name(spec)} holds the splits {', '.join(splits)}: name one as "
                        f"{readable_name(spec)}:SPLIT")


# ---------------------------------------------------------------------------------------------- files


def _folder_rows(root: Path) -> Iterator[Row | Skipped]:
    for relative, full in _walk(root):
        if isinstance(full, Skipped):
            yield full
        else:
            yield Row(where=relative, fields={}, image=ImageRef(path=full), photo=relative)


def _walk(root: Path) -> Iterator[tuple[str, str | Skipped]]:
    """(readable relative path, full path) of every image file under `root`, in a stable order.

    Symbolic links to folders are followed, each real folder once, so a link loop ends; hidden names
    are left out; a folder that cannot be listed is a Skipped.
    """
    seen = {identity for identity in [_inode(str(root))] if identity}
    problems: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=problems.append):
        while problems:
            error = problems.pop()
            where = readable_name(os.path.relpath(error.filename or dirpath, root))
            yield where, Skipped(where, "unreadable", f"{where}: the folder cannot be listed ({error.strerror})")
        kept = []
        for name in sorted(dirnames):
            identity = _inode(os.path.join(dirpath, name))
            if not name.startswith(".") and identity is not None and identity not in seen:
                seen.add(identity)
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            full = os.path.join(dirpath, name)
            yield readable_name(Path(os.path.relpath(full, root)).as_posix()), full
    while problems:  # the root itself could not be listed
        error = problems.pop()
        yield ".", Skipped(".", "unreadable", f"{readable_name(str(root))}: cannot be listed ({error.strerror})")


def _inode(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _csv_rows(path: Path, base: Path | None) -> Iterator[Row | Skipped]:
    name = readable_name(path.name)
    # surrogateescape: a name in another encoding still reaches the file it names, byte for byte.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header = [column for column in reader.fieldnames or [] if column]
        _require_columns(header, name)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                where = f"{name}, line {reader.line_num}"
                yield Skipped(where, "bad_row", f"{where}: not a CSV row ({error})")
                continue
            fields = {key: value for key, value in row.items() if key}
            yield _manifest_row(fields, f"{name}, line {reader.line_num}", base)


def _require_columns(header: list[str], name: str) -> None:
    for what, aliases in (("path", PATH_COLUMNS), ("latitude", LAT_COLUMNS), ("longitude", LON_COLUMNS)):
        if _find(header, aliases) is None:
            raise BadInputError(f"{name}: no {what} column (expected one of {', '.join(aliases)}; "
                                f"found {', '.join(header) or 'no header'})")


def _jsonl_rows(path: Path, base: Path | None) -> Iterator[Row | Skipped]:
    name = readable_name(path.name)
    for number, value in jsonl_lines(path):
        where = f"{name}, line {number}"
        if isinstance(value, BadLine):
            yield Skipped(where, "bad_row", f"{where}: {value.problem}")
        else:
            yield _manifest_row(value, where, base)


def _json_rows(path: Path, base: Path | None) -> Iterator[Row | Skipped]:
    name = readable_name(path.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInputError(f"{name}: not a JSON file ({error})") from error
    if not isinstance(data, list):
        raise BadInputError(f"{name}: expected a JSON list of objects")
    for number, value in enumerate(data, start=1):
        where = f"{name}, item {number}"
        if isinstance(value, dict):
            yield _manifest_row(value, where, base)
        else:
            yield Skipped(where, "bad_row", f"{where}: {type(value).__name__} {value!r:.40}, not an object")


def _manifest_row(fields: dict[str, Any], where: str, base: Path | None) -> Row:
    column = _find(fields, PATH_COLUMNS)
    value = fields.get(column) if column else None
    if not isinstance(value, str) or not value.strip():
        return Row(where=where, fields=fields)
    return Row(where=where, fields=fields, image=ImageRef(path=_joined(base, value.strip())),
               photo=readable_name(value.strip()))


def _joined(base: Path | None, value: str) -> str:
    return value if base is None or os.path.isabs(value) else os.path.join(base, value)


def _find(columns: Any, aliases: tuple[str, ...]) -> str | None:
    """The column among `columns` that one of `aliases` names, whatever its case and surrounding spaces."""
    lowered = {str(column).strip().lower(): column for column in columns}
    return next((lowered[alias] for alias in aliases if alias in lowered), None)


# ---------------------------------------------------------------------------------------------- datasets


@functools.lru_cache(maxsize=4)
def _dataset(key: tuple[str, str, str | None]) -> Any:
    """A dataset (memory-mapped, not loaded), opened once per process."""
    import datasets

    kind, target, split = key
    datasets.disable_progress_bars()
    try:
        if kind == "saved":
            loaded = datasets.load_from_disk(target)
        elif kind == "parquet":
            loaded = datasets.load_dataset("parquet", data_files=_parquet_files(Path(target)), split="train")
        else:
            loaded = datasets.load_dataset(target, split=split)
    except Exception as error:  # datasets raises many unrelated types for a missing / unreadable dataset
        where = f"{HUB_PREFIX}{target}" if kind == "hub" else target
        raise BadInputError(f"{readable_name(where)}: cannot open the dataset ({error})") from error
    return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded


@functools.lru_cache(maxsize=4)
def _undecoded(key: tuple[str, str, str | None], column: str) -> Any:
    """The dataset with `column` left as encoded bytes, so that the gate sees a picture before decoding."""
    import datasets

    return _dataset(key).select_columns([column]).cast_column(column, datasets.Image(decode=False))


def _picture_columns(dataset: Any) -> list[str]:
    """The columns of a `datasets.Dataset` that hold pictures."""
    import datasets

    return [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)]


def _dataset_rows(key: tuple[str, str, str | None], name: str, base: Path | None) -> Iterator[Row]:
    dataset = _dataset(key)
    pictures = _picture_columns(dataset)
    text = dataset.remove_columns(pictures) if pictures else dataset
    for start in range(0, len(text), _BATCH):
        batch = text[start:start + _BATCH]
        for offset in range(len(next(iter(batch.values()), []))):
            index = start + offset
            fields = {column: values[offset] for column, values in batch.items()}
            where = f"{name}[{index}]"
            if pictures:
                row = Row(where, fields, ImageRef(dataset=key, row=index, column=pictures[0]), photo=where)
            else:
                row = _manifest_row(fields, where, base)
            yield from _expanded(row)


def _expanded(row: Row) -> Iterator[Row]:
    """A row of one photo with its QA records in a `records` list (how `gaea data build` saves hf/) as one
    row per record; any other row as it is."""
    records = row.fields.get("records")
    if not isinstance(records, list):
        yield row
        return
    for number, record in enumerate(records):
        yield Row(f"{row.where}.records[{number}]", dict(record), row.image, row.photo)


# ---------------------------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class PhotoItem:
    """A photo to use: `key` names it stably (its id, or its path); no lat / lon: read them from its EXIF."""

    key: str
    image: ImageRef
    lat: float | None = None
    lon: float | None = None
    where: str = ""

    @property
    def photo_id(self) -> str:
        return hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:16]


def photo_items(source: Source) -> Iterator[PhotoItem | Skipped]:
    """The geotagged photos of `source`, in order: each row's picture and position (its columns, or the
    photo's EXIF where it has none), or a Skipped saying what is wrong with the row.

    A photo listed twice (the same id, or without ids the same file) is used once, the repeat being a
    Skipped ``duplicate``; QA records, many to a photo, give each photo once without a word.
    """
    seen: dict[str, str] = {}  # the identity of each photo given -> where it was listed
    for row in source.rows():
        if isinstance(row, Skipped):
            yield row
            continue
        try:
            item, identity = _photo_item(row)
        except PhotoRejected as rejected:
            yield Skipped(row.photo or row.where, rejected.reason, rejected.detail)
            continue
        if identity not in seen:
            seen[identity] = row.where
            yield item
        elif "question" not in row.fields:
            yield Skipped(item.key, "duplicate", f"{row.where}: {item.key} is listed already ({seen[identity]})")


@contextmanager
def opened_photo(item: PhotoItem) -> Iterator[tuple[Image.Image, float, float]]:
    """The picture of `item` opened through the gate (pixels not decoded yet) and its position: the one
    its row gives, else the photo's EXIF GPS.

    Raises
    ------
    PhotoRejected
        When the picture does not pass the gate or has no usable position.
    """
    with item.image.open(name=item.key) as image:
        if item.lat is None or item.lon is None:
            lat, lon = gps_of_open_image(image, name=item.key)
        else:
            lat, lon = item.lat, item.lon
        yield image, lat, lon


def _photo_item(row: Row) -> tuple[PhotoItem, str]:
    """The photo of a row, and what identifies it among the others (its id, or its file)."""
    if row.image is None:
        column = _find(row.fields, PATH_COLUMNS)
        value = row.fields.get(column) if column else None
        problem = f"its {column} {value!r:.60} is not a file name" if column else "it names no image"
        raise PhotoRejected("bad_row", f"{row.where}: {problem} (columns: {', '.join(PATH_COLUMNS)})")
    lat = _number(row.fields, LAT_COLUMNS, "latitude", row.where)
    lon = _number(row.fields, LON_COLUMNS, "longitude", row.where)
    if (lat is None) != (lon is None):
        raise PhotoRejected("bad_coordinates", f"{row.where}: a {'longitude' if lat is None else 'latitude'} "
                                               "without its other half")
    if lat is not None:
        check_coordinates(lat, lon, name=row.where)
    id_column = None if "question" in row.fields else _find(row.fields, ID_COLUMNS)
    identity = row.fields.get(id_column) if id_column else None
    item = PhotoItem(readable_name(str(identity)) if identity not in (None, "") else row.photo, row.image, lat, lon,
                     row.where)
    if identity not in (None, ""):
        return item, f"id:{item.key}"
    return item, f"file:{os.path.normpath(row.image.path)}" if row.image.path else f"cell:{item.key}"


def _number(fields: dict[str, Any], aliases: tuple[str, ...], what: str, where: str) -> float | None:
    column = _find(fields, aliases)
    value = fields.get(column) if column else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise PhotoRejected("bad_coordinates", f"{where}: {what} {readable_name(repr(value))[:40]} is not a number")
