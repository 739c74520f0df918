"""Reading photo inputs: EXIF GPS (refs, rationals, empty blocks), HEIC, manifests, Hugging Face datasets,
through the one source reader (gaea.sources) and the data build's resolving of each photo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from test_data_pipeline import write_gps_copy

from data_pipeline.inputs import Photo, resolve_item
from gaea.errors import BadInputError
from gaea.exif import gps_from_exif, read_exif_gps
from gaea.sources import PhotoItem, Skipped, open_source, photo_items


def iter_items(spec) -> list[PhotoItem | Skipped]:
    return list(photo_items(open_source(spec)))


def _expected(photos: Path) -> dict[str, tuple[float, float] | None]:
    with open(photos / "expected_gps.csv", newline="") as handle:
        return {row["file"]: (float(row["lat"]), float(row["lon"])) if row["lat"] else None
                for row in csv.DictReader(handle)}


def test_exif_gps_of_every_shared_photo_matches_expected_gps_csv(photos_dir: Path) -> None:
    for name, expected in _expected(photos_dir).items():
        if expected is None:
            with pytest.raises(BadInputError, match=name):
                read_exif_gps(photos_dir / name)
        else:
            lat, lon = read_exif_gps(photos_dir / name)
            assert abs(lat - expected[0]) < 1e-5 and abs(lon - expected[1]) < 1e-5, name


def test_south_and_west_references_give_negative_coordinates(photos_dir: Path, tmp_path: Path) -> None:
    assert read_exif_gps(photos_dir / "Kodak_CX7530.jpg")[0] < 0  # Nakuru, just south of the equator
    copy = write_gps_copy(photos_dir / "DSCN0010.jpg", tmp_path / "rio.jpg", -22.9068, -43.1729)
    lat, lon = read_exif_gps(copy)
    assert abs(lat + 22.9068) < 1e-6 and abs(lon + 43.1729) < 1e-6


def test_gps_block_edge_cases_are_rejected_with_a_reason() -> None:
    def reason(gps: dict) -> str:
        with pytest.raises(Exception) as caught:
            gps_from_exif(gps, name="x.jpg")
        return caught.value.reason

    assert reason({0: b"\x02\x02\x00\x00"}) == "no_gps"
    assert reason({1: "N", 2: (91.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}) == "bad_coordinates"
    assert reason({1: "N", 2: ((43, 0), (0, 1), (0, 1)), 3: "E", 4: (10.0, 0.0, 0.0)}) == "bad_coordinates"
    assert reason({1: "Q", 2: (43.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)}) == "bad_coordinates"
    assert reason({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}) == "bad_coordinates"
    lat, lon = gps_from_exif({1: b"S\x00", 2: ((1, 1), (30, 1), (0, 1)), 3: b"W", 4: 20.25}, name="x.jpg")
    assert (lat, lon) == (-1.5, -20.25)


def test_heic_photos_are_read_and_stored_as_jpeg(photos_dir: Path, tmp_path: Path) -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    jpeg = write_gps_copy(photos_dir / "DSCN0012.jpg", tmp_path / "src.jpg", 60.53, 26.95)
    with Image.open(jpeg) as image:
        image.save(tmp_path / "phone.heic", exif=image.getexif(), quality=80)
    assert abs(read_exif_gps(tmp_path / "phone.heic")[0] - 60.53) < 1e-6
    items = [item for item in iter_items(tmp_path) if item.key == "phone.heic"]
    photo = resolve_item(items[0], out_dir=tmp_path / "out")
    assert isinstance(photo, Photo) and photo.image.endswith(".jpg")
    with Image.open(tmp_path / "out" / photo.image) as stored:
        assert stored.format == "JPEG" and stored.size == (640, 480)


def test_folders_are_read_recursively_in_a_stable_order(tmp_path: Path, photos_dir: Path) -> None:
    for relative in ("b/2.jpg", "a/1.jpg", "a/10.png", "c.jpg", ".hidden/x.jpg", "notes.txt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes((photos_dir / "Canon_40D.jpg").read_bytes())
    assert [item.key for item in iter_items(tmp_path)] == ["c.jpg", "a/1.jpg", "a/10.png", "b/2.jpg"]


def test_jsonl_manifest_and_missing_columns(tmp_path: Path, photos_dir: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"file": str(photos_dir / "Canon_40D.jpg"), "latitude": 48.1, "lng": 10.0}) + "\n")
    (item,) = iter_items(manifest)
    assert (item.lat, item.lon) == (48.1, 10.0)
    resolved = resolve_item(item, out_dir=tmp_path / "out")
    assert isinstance(resolved, Photo) and (resolved.lat, resolved.lon) == (48.1, 10.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,x,y\na.jpg,1,2\n")
    with pytest.raises(BadInputError, match="no latitude column"):
        list(iter_items(bad))
    with pytest.raises(BadInputError, match="no such file or folder"):
        list(iter_items(tmp_path / "absent"))


def test_hugging_face_dataset_input(tmp_path: Path, photos_dir: Path) -> None:
    import datasets

    rows = {"image": [str(photos_dir / "DSCN0010.jpg"), str(photos_dir / "Kodak_CX7530.jpg")],
            "lat": [37.8071, 123.0], "lon": [-122.3004, 5.0]}
    saved = tmp_path / "hfin"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).save_to_disk(str(saved))
    first, second = iter_items(saved)
    assert first.image.row == 0 and first.key == "hfin[0]"
    photo = resolve_item(first, out_dir=tmp_path / "out")
    assert isinstance(photo, Photo) and (tmp_path / "out" / photo.image).is_file()
    assert (tmp_path / "out" / photo.image).read_bytes() == (photos_dir / "DSCN0010.jpg").read_bytes()
    assert isinstance(second, Skipped) and second.reason == "bad_coordinates"
