"""Where photos come from: a folder (GPS from EXIF), a CSV / JSONL manifest, or a Hugging Face dataset.

Inputs are read as a stream of `PhotoItem`s in a deterministic order (so that a resumed build sees the
same sequence), and each item is then resolved into a `Photo` (coordinates checked, image checked and
placed under the output directory) or a `Skipped` with a reason. Nothing here raises on a bad photo:
bad photos are data, reported in `skipped.jsonl`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gaea.errors import BadInputError
from gaea.exif import PhotoRejected, check_coordinates, gps_of_open_image, open_photo
from gaea.images import IMAGE_SUFFIXES
from gaea.models.hub import prepare_hub_dataset

log = logging.getLogger(__name__)

# Formats every training tool reads; anything else (HEIC, TIFF, ...) is converted to JPEG on the way in.
PORTABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
LAT_COLUMNS = ("lat", "latitude", "gps_lat")
LON_COLUMNS = ("lon", "lng", "longitude", "gps_lon")
PATH_COLUMNS = ("path", "file", "image", "filename", "file_name")
HF_PREFIX = "hf:"



@dataclass(frozen=True)
class PhotoItem:
    """One input photo before it is checked: `key` names it stably (relative path, manifest row, dataset row)."""

    key: str
    path: str | None = None
    lat: float | None = None
    lon: float | None = None
    hf_index: int | None = None

    @property
    def photo_id(self) -> str:
        return hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Photo:
    """A usable photo: checked coordinates and an image path relative to the dataset directory."""

    photo_id: str
    image: str
    lat: float
    lon: float
    key: str


@dataclass(frozen=True)
class Skipped:
    """A photo left out, with a reason code and details.

    Reasons: no_gps (no GPS block, or one without a position), empty_gps (an empty GPS block),
    bad_coordinates (impossible or unparsable), corrupt (not a readable image), missing (no such file),
    too_large (over the size limits of gaea.settings).
    """

    key: str
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"photo": self.key, "reason": self.reason, "detail": self.detail}


# ---------------------------------------------------------------------------------------------- reading inputs


def iter_items(spec: str | Path) -> Iterator[PhotoItem]:
    """The photos named by `spec`, in a deterministic order.

    `spec` is a folder of images (searched recursively), a `.csv` / `.jsonl` manifest with path, lat
    and lon columns, a dataset saved with `datasets.save_to_disk`, or `hf:NAME[:SPLIT]` for a Hugging
    Face dataset with image, lat and lon columns.
    """
    text = str(spec)
    if text.startswith(HF_PREFIX):
        yield from _iter_hf_items(text)
        return
    path = Path(spec)
    if not path.exists():
        raise BadInputError(f"{path}: no such photo folder, manifest or dataset")
    if path.is_dir() and _is_saved_dataset(path):
        yield from _iter_hf_items(str(path))
    elif path.is_dir():
        yield from _iter_folder(path)
    elif path.suffix.lower() == ".csv":
        yield from _iter_csv(path)
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        yield from _iter_jsonl(path)
    else:
        raise BadInputError(f"{path}: expected a photo folder, a .csv or .jsonl manifest, or a saved dataset")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def _iter_folder(root: Path) -> Iterator[PhotoItem]:
    # os.walk with sorted names streams a huge tree in a stable order without listing it all at once.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = Path(dirpath) / name
            yield PhotoItem(key=full.relative_to(root).as_posix(), path=str(full))


def _pick_column(columns: list[str], candidates: tuple[str, ...], manifest: Path, what: str) -> str:
    lowered = {column.strip().lower(): column for column in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise BadInputError(f"{manifest}: no {what} column (expected one of {', '.join(candidates)}; found {columns})")


def _manifest_item(row: dict[str, Any], row_number: int, manifest: Path, columns: tuple[str, str, str]) -> PhotoItem:
    path_col, lat_col, lon_col = columns
    raw_path = str(row.get(path_col) or "").strip()
    full = Path(raw_path) if Path(raw_path).is_absolute() else manifest.parent / raw_path
    key = raw_path or f"{manifest.name}:row{row_number}"
    return PhotoItem(key=key, path=str(full) if raw_path else None, lat=_to_float(row.get(lat_col)),
                     lon=_to_float(row.get(lon_col)))


def _iter_csv(manifest: Path) -> Iterator[PhotoItem]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        columns = (
            _pick_column(header, PATH_COLUMNS, manifest, "path"),
            _pick_column(header, LAT_COLUMNS, manifest, "latitude"),
            _pick_column(header, LON_COLUMNS, manifest, "longitude"),
        )
        for number, row in enumerate(reader, start=2):
            yield _manifest_item(row, number, manifest, columns)


def _iter_jsonl(manifest: Path) -> Iterator[PhotoItem]:
    with open(manifest, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadInputError(f"{manifest}, line {number}: not valid JSON ({error.msg})") from error
            keys = list(row)
            columns = (
                _pick_column(keys, PATH_COLUMNS, manifest, "path"),
                _pick_column(keys, LAT_COLUMNS, manifest, "latitude"),
                _pick_column(keys, LON_COLUMNS, manifest, "longitude"),
            )
            yield _manifest_item(row, number, manifest, columns)


def load_hf_dataset(spec: str) -> Any:
    """A Hugging Face dataset from a `save_to_disk` folder or `hf:NAME[:SPLIT]` (memory-mapped, not loaded)."""
    import datasets

    if spec.startswith(HF_PREFIX):
        prepare_hub_dataset(spec[len(HF_PREFIX):].partition(":")[0])
    try:
        if not spec.startswith(HF_PREFIX):
            loaded = datasets.load_from_disk(spec)
        else:
            name, _, split = spec[len(HF_PREFIX):].partition(":")
            loaded = datasets.load_dataset(name, split=split or "train")
    except Exception as error:  # datasets raises many unrelated types for a missing / unreachable dataset
        raise BadInputError(f"{spec}: cannot open the Hugging Face dataset ({error})") from error
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded


def _iter_hf_items(spec: str) -> Iterator[PhotoItem]:
    dataset = load_hf_dataset(spec)
    columns = list(dataset.column_names)
    where = Path(spec) if not spec.startswith(HF_PREFIX) else Path(spec[len(HF_PREFIX):])
    _pick_column(columns, ("image",), where, "image")
    lat_col = _pick_column(columns, LAT_COLUMNS, where, "latitude")
    lon_col = _pick_column(columns, LON_COLUMNS, where, "longitude")
    coords = dataset.select_columns([lat_col, lon_col])
    for index, row in enumerate(coords):
        yield PhotoItem(key=f"{where.name}[{index}]", lat=_to_float(row[lat_col]), lon=_to_float(row[lon_col]),
                        hf_index=index)


def _to_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _check_decodes(image: Image.Image, *, name: str) -> None:
    # A reduced-size JPEG decode still reads the whole stream, so truncation shows at a fraction of the cost.
    try:
        image.draft("RGB", (256, 256))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PhotoRejected("corrupt", f"{name}: the image is corrupt or truncated ({error})") from error


# ---------------------------------------------------------------------------------------------- resolving


def resolve_item(item: PhotoItem, *, out_dir: Path, hf_dataset: Any = None) -> Photo | Skipped:
    """Check one input photo and place its image in `out_dir/images/`; a bad photo becomes a `Skipped`."""
    try:
        if item.hf_index is not None:
            return _resolve_hf(item, out_dir=out_dir, hf_dataset=hf_dataset)
        return _resolve_file(item, out_dir=out_dir)
    except PhotoRejected as rejected:
        return Skipped(item.key, rejected.reason, rejected.detail)


def _resolve_file(item: PhotoItem, *, out_dir: Path) -> Photo:
    if item.path is None:
        raise PhotoRejected("missing", f"{item.key}: the manifest row names no image file")
    source = Path(item.path)
    with open_photo(source, name=item.key) as image:
        if item.lat is None and item.lon is None:
            lat, lon = gps_of_open_image(image, name=item.key)
        else:
            lat, lon = item.lat, item.lon
            check_coordinates(lat, lon, name=item.key)
        _check_decodes(image, name=item.key)
        relative = _place_image(source, out_dir=out_dir, photo_id=item.photo_id)
    return Photo(photo_id=item.photo_id, image=relative, lat=float(lat), lon=float(lon), key=item.key)


def _resolve_hf(item: PhotoItem, *, out_dir: Path, hf_dataset: Any) -> Photo:
    check_coordinates(item.lat, item.lon, name=item.key)
    try:
        image = hf_dataset[item.hf_index]["image"]
    except Exception as error:  # an undecodable image cell surfaces as whatever the decoder raised
        raise PhotoRejected("corrupt", f"{item.key}: the image cannot be decoded ({error})") from error
    if not isinstance(image, Image.Image):
        raise PhotoRejected("corrupt", f"{item.key}: the image column holds {type(image).__name__}, not an image")
    relative = f"images/{item.photo_id}.jpg"
    target = out_dir / relative
    if not target.exists():
        _save_jpeg(image, target)
    return Photo(photo_id=item.photo_id, image=relative, lat=float(item.lat), lon=float(item.lon), key=item.key)


def _place_image(source: Path, *, out_dir: Path, photo_id: str) -> str:
    """Hard-link (or copy) a portable image, convert anything else to JPEG; return its relative path."""
    suffix = source.suffix.lower()
    portable = suffix in PORTABLE_SUFFIXES
    relative = f"images/{photo_id}{'.jpg' if suffix == '.jpeg' or not portable else suffix}"
    target = out_dir / relative
    if target.exists():
        return relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not portable:
        with Image.open(source) as full:
            _save_jpeg(full, target)
        return relative
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or a file we may not link to: copy instead
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return relative


def _save_jpeg(image: Image.Image, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    image.convert("RGB").save(tmp, format="JPEG", quality=92)
    os.replace(tmp, target)
