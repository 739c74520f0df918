"""Turning one input photo of `gaea data build` into a `Photo` of the dataset, or a `Skipped` with a reason.

Photos are read by `gaea.sources.photo_items` (every input kind, in a deterministic order, so that a
resumed build sees the same sequence). Here each is checked (the image gate, its position from the row
or from EXIF, a decode that shows truncation) and placed under the output directory. Nothing here raises
on a bad photo: bad photos are data, reported in `skipped.jsonl`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from gaea.errors import PhotoRejected
from gaea.images import decode
from gaea.sources import PhotoItem, Skipped, opened_photo

# Formats every training tool reads; anything else (HEIC, TIFF, ...) is converted to JPEG on the way in.
PORTABLE_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}  # MPO: a camera's JPEG


@dataclass(frozen=True)
class Photo:
    """A usable photo: checked coordinates and an image path relative to the dataset directory."""

    photo_id: str
    image: str
    lat: float
    lon: float
    key: str


def resolve_item(item: PhotoItem | Skipped, *, out_dir: Path) -> Photo | Skipped:
    """Check one input photo and place its image in `out_dir/images/`; a bad photo becomes a `Skipped`."""
    if isinstance(item, Skipped):
        return item
    try:
        with opened_photo(item) as (image, lat, lon):
            decode(image, name=item.key, draft=True)
            relative = _place_image(item, image, out_dir=out_dir)
    except PhotoRejected as rejected:
        return Skipped(item.key, rejected.reason, rejected.detail)
    return Photo(photo_id=item.photo_id, image=relative, lat=float(lat), lon=float(lon), key=item.key)


def _place_image(item: PhotoItem, image: Image.Image, *, out_dir: Path) -> str:
    """Hard-link (or copy) a portable image file, write a dataset's picture as it is, convert anything else
    to JPEG; return the path relative to `out_dir`."""
    suffix = PORTABLE_FORMATS.get(image.format or "")
    relative = f"images/{item.photo_id}{suffix or '.jpg'}"
    target = out_dir / relative
    if target.exists():
        return relative
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if suffix is None:  # decoded in full already: draft mode applies to JPEG only
        image.convert("RGB").save(tmp, format="JPEG", quality=92)
    elif item.image.path is None:
        tmp.write_bytes(item.image.raw(name=item.key))
    else:
        tmp.unlink(missing_ok=True)
        try:
            os.link(item.image.path, tmp)
        except OSError:  # another file system, or a file we may not link to: copy instead
            shutil.copyfile(item.image.path, tmp)
    os.replace(tmp, target)
    return relative
