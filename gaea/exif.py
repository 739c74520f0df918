"""GPS positions from photos' EXIF: one reader for the data pipeline and for retrieval galleries.

A photo can be unusable in several ways (no GPS block, an empty one, impossible coordinates, a corrupt
or oversized file); each is a `PhotoRejected` whose `reason` is a short code and whose message names the
photo and the problem.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from gaea.errors import PhotoRejected
from gaea.images import open_image
from gaea.io import readable_name

# Tags of the EXIF GPSInfo directory.
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4


def _rational(value: Any) -> float:
    # Pillow gives IFDRational (a Fraction-like) or a (num, den) pair; a zero denominator is NaN, not a crash.
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return float(num) / float(den) if den else math.nan
    try:
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def _degrees(value: Any) -> float:
    if isinstance(value, (tuple, list)):
        parts = [_rational(part) for part in value] + [0.0, 0.0]
        return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    return _rational(value)


def _ref(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value or "").strip("\x00 ").upper()[:1]


def gps_from_exif(gps: dict[int, Any], *, name: str) -> tuple[float, float]:
    """Signed decimal (lat, lon) from an EXIF GPSInfo IFD.

    Raises
    ------
    PhotoRejected
        With reason `no_gps` when the block has no position, `bad_coordinates` when it is impossible.
    """
    if _GPS_LAT not in gps or _GPS_LON not in gps:
        raise PhotoRejected("no_gps", f"{name}: the EXIF GPS block holds no latitude/longitude")
    lat, lon = _degrees(gps[_GPS_LAT]), _degrees(gps[_GPS_LON])
    lat_ref, lon_ref = _ref(gps.get(_GPS_LAT_REF)), _ref(gps.get(_GPS_LON_REF))
    if lat_ref not in ("N", "S", "") or lon_ref not in ("E", "W", ""):
        raise PhotoRejected("bad_coordinates", f"{name}: GPS references {lat_ref!r}/{lon_ref!r} are not N/S and E/W")
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    check_coordinates(lat, lon, name=name)
    return lat, lon


def check_coordinates(lat: float | None, lon: float | None, *, name: str) -> None:
    """Raise PhotoRejected unless (lat, lon) is a possible position (finite, in range, not the 0,0 'no fix')."""
    if lat is None or lon is None:
        raise PhotoRejected("no_gps", f"{name}: no latitude/longitude given")
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise PhotoRejected("bad_coordinates", f"{name}: coordinates ({lat}, {lon}) are not numbers")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise PhotoRejected("bad_coordinates", f"{name}: coordinates ({lat}, {lon}) are outside the globe")
    if lat == 0.0 and lon == 0.0:
        raise PhotoRejected("bad_coordinates", f"{name}: coordinates (0, 0) mean the camera had no GPS fix")


def read_exif_gps(path: str | Path) -> tuple[float, float]:
    """(lat, lon) in signed decimal degrees from a photo's EXIF GPS block.

    Raises
    ------
    PhotoRejected
        When the file is not a readable image or has no usable GPS position (the message says which).
    """
    with open_image(path) as image:
        return gps_of_open_image(image, name=readable_name(str(path)))


def gps_of_open_image(image: Image.Image, *, name: str) -> tuple[float, float]:
    """(lat, lon) from the EXIF of an opened photo; PhotoRejected says why there is none."""
    try:
        gps = dict(image.getexif().get_ifd(ExifTags.IFD.GPSInfo))
    except Exception as error:  # malformed EXIF raises anything from struct.error to KeyError inside Pillow
        raise PhotoRejected("corrupt", f"{name}: the EXIF block is malformed ({error})") from error
    if not gps:
        if _has_gps_pointer(image.info.get("exif") or b""):
            raise PhotoRejected("empty_gps", f"{name}: the EXIF GPS block is empty")
        raise PhotoRejected("no_gps", f"{name}: no GPS block in EXIF")
    return gps_from_exif(gps, name=name)


def _has_gps_pointer(raw: bytes) -> bool:
    """Whether the first EXIF directory points to a GPS block (Pillow drops a pointer to an empty block)."""
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return False
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", tiff, 4)
    if offset + 2 > len(tiff):
        return False
    (entries,) = struct.unpack_from(order + "H", tiff, offset)
    for index in range(entries):
        position = offset + 2 + 12 * index
        if position + 2 > len(tiff):
            return False
        if struct.unpack_from(order + "H", tiff, position)[0] == int(ExifTags.IFD.GPSInfo):
            return True
    return False
