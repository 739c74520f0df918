"""One reader of photos and datasets (gaea.sources), one image gate (gaea.images), one JSONL reader (gaea.io),
and what data build, gallery build, eval and finetune make of them: every input kind, column aliases,
DatasetDict splits, the hub spec, bad rows skipped with a reason, hf/ images stored once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from data_pipeline.build import BuildConfig, build_dataset
from gaea.errors import BadInputError, PhotoRejected
from gaea.images import load_image, open_image
from gaea.io import BadLine, read_jsonl
from gaea.sources import PhotoItem, Skipped, open_source, photo_items

AREZZO = ["DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg"]
POSITIONS = [(43.4674, 11.8851), (43.4672, 11.8839), (43.4671, 11.8840)]


def _items(spec, **options) -> list[PhotoItem | Skipped]:
    return list(photo_items(open_source(spec, **options)))


def _dataset(photos_dir: Path, names: list[str], positions: list[tuple[float, float]]):
    import datasets

    return datasets.Dataset.from_dict({
        "image": [str(photos_dir / name) for name in names],
        "Latitude": [lat for lat, _ in positions], "Longitude": [lon for _, lon in positions],
    }).cast_column("image", datasets.Image())


@pytest.fixture()
def dataset_dict(tmp_path: Path, photos_dir: Path) -> Path:
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({
        "train": _dataset(photos_dir, AREZZO[:2], POSITIONS[:2]),
        "test": _dataset(photos_dir, AREZZO[2:], POSITIONS[2:]),
    }).save_to_disk(str(folder))
    return folder


def _build(spec, out: Path, shared_data: Path, **options):
    config = BuildConfig(photos=str(spec), out=out, osm_file=str(shared_data / "osm" / "kirchberg-no-pois.osm"),
                         progress=False, hf_dataset=False, types=("loc",), per_type=1, **options)
    summary = build_dataset(config)
    records = [json.loads(line) for line in (out / "qa.jsonl").read_text().splitlines()]
    return summary, records


# ---------------------------------------------------------------------------------------------- the examples


def test_a_csv_headed_file_latitude_longitude_works_for_data_build_and_gallery_build(
        tmp_path, photos_dir, shared_data, tiny_encoder) -> None:
    from gaea.retrieval import Embedder, build_gallery

    manifest = tmp_path / "photos.csv"
    manifest.write_text("File,Latitude,Longitude\n" + "".join(
        f"{photos_dir / name},{lat},{lon}\n" for name, (lat, lon) in zip(AREZZO, POSITIONS, strict=True)))
    summary, records = _build(manifest, tmp_path / "data", shared_data)
    assert summary.photos_used == 3 and [(r["lat"], r["lon"]) for r in records] == POSITIONS
    gallery = build_gallery(manifest, tmp_path / "gallery", Embedder(tiny_encoder), show_progress=False)
    assert len(gallery) == 3 and gallery.coords.tolist() == [list(p) for p in POSITIONS]


def test_a_dataset_dict_folder_works_for_data_build_and_gallery_build(
        tmp_path, dataset_dict, shared_data, tiny_encoder) -> None:
    from gaea.retrieval import Embedder, build_gallery

    summary, records = _build(dataset_dict, tmp_path / "data", shared_data)  # the train split by default
    assert summary.photos_used == 2 and not summary.skipped and len(records) == 2
    assert all((tmp_path / "data" / r["image"]).stat().st_size > 10_000 for r in records)
    summary, records = _build(f"{dataset_dict}:test", tmp_path / "data-test", shared_data)
    assert summary.photos_used == 1 and (records[0]["lat"], records[0]["lon"]) == POSITIONS[2]
    gallery = build_gallery(dataset_dict, tmp_path / "gallery", Embedder(tiny_encoder), show_progress=False)
    assert gallery.ids == ["dd[0]", "dd[1]"] and gallery.coords.tolist() == [list(p) for p in POSITIONS[:2]]


def test_splits_of_a_dataset_dict_are_chosen_or_listed(tmp_path, photos_dir) -> None:
    import datasets

    folder = tmp_path / "ab"
    datasets.DatasetDict({"a": _dataset(photos_dir, AREZZO[:1], POSITIONS[:1]),
                          "b": _dataset(photos_dir, AREZZO[1:2], POSITIONS[1:2])}).save_to_disk(str(folder))
    with pytest.raises(BadInputError, match=r"holds the splits a, b: name one as .*ab:SPLIT"):
        open_source(folder)
    assert open_source(f"{folder}:b").split == "b"
    with pytest.raises(BadInputError, match="no split 'c' \\(it has a, b\\)"):
        open_source(f"{folder}:c")
    assert open_source(folder, default_split="a").split == "a"


def test_one_hub_spec_for_every_command(monkeypatch) -> None:
    from eval.data import load_bench
    from finetune.data import load_samples

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInputError, match="cannot download the dataset 'owner/name': HF_HUB_OFFLINE is set"):
        open_source("hf:owner/name:validation")
    for read in (lambda spec: _items(spec), load_bench, load_samples):
        with pytest.raises(BadInputError, match="owner/name: no such file or folder; a Hugging Face hub dataset "
                                                "is written hf:owner/name"):
            read("owner/name")
    with pytest.raises(BadInputError, match="is written hf:OWNER/NAME"):
        open_source("hf:just-a-name")


# ---------------------------------------------------------------------------------------------- every input kind


def test_every_kind_gives_the_same_photos(tmp_path, photos_dir) -> None:
    import datasets

    rows = [{"PATH": str(photos_dir / name), "Lat": lat, "lng": lon}
            for name, (lat, lon) in zip(AREZZO, POSITIONS, strict=True)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "m.tsv").write_text("img\tgps_lat\tlong\n" + "".join(f"{r['PATH']}\t{r['Lat']}\t{r['lng']}\n"
                                                                   for r in rows))
    _dataset(photos_dir, AREZZO, POSITIONS).to_parquet(str(tmp_path / "m.parquet"))
    (tmp_path / "pq").mkdir()
    shutil.copy(tmp_path / "m.parquet", tmp_path / "pq" / "part-0.parquet")
    _dataset(photos_dir, AREZZO, POSITIONS).save_to_disk(str(tmp_path / "saved"))
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "qa.jsonl").write_text("".join(json.dumps({"image": r["PATH"], "question": f"q{i}", "answer": "a",
                                                     "question_type": "LOC", "lat": r["Lat"], "lon": r["lng"]}) + "\n"
                                         for r in rows for i in range(2)))  # two questions per photo
    kinds = {"m.jsonl": "jsonl", "m.json": "json", "m.tsv": "csv", "m.parquet": "parquet", "pq": "parquet",
             "saved": "saved", "qa": "records"}
    for name, kind in kinds.items():
        source = open_source(tmp_path / name)
        items = list(photo_items(source))
        assert source.kind == kind and all(isinstance(item, PhotoItem) for item in items), name
        assert [(item.lat, item.lon) for item in items] == POSITIONS, name
        with items[0].image.open(name="x") as image:
            assert image.size == (640, 480), name
    assert _items(tmp_path / "saved")[0].key == "saved[0]"
    assert isinstance(datasets.load_from_disk(str(tmp_path / "saved")), datasets.Dataset)


def test_bad_rows_are_skipped_with_a_reason_and_the_good_ones_kept(tmp_path, photos_dir) -> None:
    good = str(photos_dir / AREZZO[0])
    lines = [json.dumps({"path": good, "lat": 43.4, "lon": 11.8}), "42", "[1, 2, 3]", "null", '{"path": "x.jpg",',
             json.dumps({"path": good, "lat": 1, "lon": 2}), json.dumps({"path": "a.jpg", "lat": True, "lon": 2}),
             json.dumps({"path": "b.jpg", "lat": "north", "lon": 2}),
             json.dumps({"path": "c.jpg", "lat": 95, "lon": 2}), json.dumps({"path": "d.jpg", "lat": 1.0}),
             json.dumps({"file": 7, "lat": 1, "lon": 2})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    items = _items(tmp_path / "m.jsonl")
    assert isinstance(items[0], PhotoItem) and len(items) == len(lines)
    skipped = [(item.reason, item.detail) for item in items[1:]]
    assert skipped == [
        ("bad_row", "m.jsonl, line 2: a JSON number, not an object"),
        ("bad_row", "m.jsonl, line 3: a JSON array, not an object"),
        ("bad_row", "m.jsonl, line 4: a JSON null, not an object"),
        ("bad_row", "m.jsonl, line 5: not valid JSON (Expecting property name enclosed in double quotes at "
                    "character 19)"),
        ("duplicate", f"m.jsonl, line 6: {good} is listed already (m.jsonl, line 1)"),
        ("bad_coordinates", "m.jsonl, line 7: latitude True is not a number"),
        ("bad_coordinates", "m.jsonl, line 8: latitude 'north' is not a number"),
        ("bad_coordinates", "m.jsonl, line 9: coordinates (95.0, 2.0) are outside the globe"),
        ("bad_coordinates", "m.jsonl, line 10: a latitude without its other half"),
        ("bad_row", "m.jsonl, line 11: its file 7 is not a file name (columns: "
                    "path, file, file_name, filename, filepath, image, image_path, img)"),
    ]


def test_a_csv_in_another_encoding_reaches_its_files(tmp_path, photos_dir) -> None:
    name = os.fsdecode(b"Z\xfcrich.jpg")
    shutil.copy(photos_dir / AREZZO[0], tmp_path / name)
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,lat,lon\nZ\xfcrich.jpg,47.37,8.54\n")  # BOM, latin-1
    (item,) = _items(tmp_path / "m.csv")
    assert item.key == "Z\\xfcrich.jpg" and (item.lat, item.lon) == (47.37, 8.54)
    assert load_image(item.image.path).size == (640, 480)
    (tmp_path / "bad.csv").write_text("path,x,y\na.jpg,1,2\n")
    with pytest.raises(BadInputError, match="bad.csv: no latitude column .*found path, x, y"):
        _items(tmp_path / "bad.csv")


# ---------------------------------------------------------------------------------------------- the image gate


def test_the_gate_refuses_before_decoding(tmp_path, photos_dir, monkeypatch) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    Image.new("1", (12000, 12000)).save(tmp_path / "huge.png")
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # over twice Pillow's own limit too
    cases = {"pipe.jpg": ("not_a_file", "named pipe"), "huge.png": ("too_large", "12000x12000 pixels"),
             "bomb.png": ("too_large", "far more pixels than allowed"), "gone.jpg": ("missing", "no such file")}
    for name, (reason, says) in cases.items():
        with pytest.raises(PhotoRejected, match=says) as caught:
            load_image(tmp_path / name)
        assert caught.value.reason == reason
    monkeypatch.setenv("GAEA_MAX_IMAGE_BYTES", "1000")
    with pytest.raises(PhotoRejected, match="MB allowed \\(GAEA_MAX_IMAGE_BYTES\\)"):
        load_image(photos_dir / AREZZO[0])
    monkeypatch.setenv("GAEA_MAX_IMAGE_BYTES", str(10**8))
    monkeypatch.setenv("GAEA_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(PhotoRejected, match="640x480 pixels, more than the 1,000 allowed"):
        load_image((photos_dir / AREZZO[0]).read_bytes(), name="cell")
    monkeypatch.delenv("GAEA_MAX_IMAGE_PIXELS")
    with open_image(photos_dir / AREZZO[0]) as image:
        assert image.size == (640, 480)


# ---------------------------------------------------------------------------------------------- JSON lines


def test_every_bad_jsonl_line_names_its_file_and_line(tmp_path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", \n\xff\xfe\n{"id": "c"}\n{"id": "d"')  # torn last line
    with pytest.raises(BadInputError, match="samples.jsonl, line 2: not valid JSON"):
        list(read_jsonl(path))
    bad: list[BadLine] = []
    assert [row["id"] for row in read_jsonl(path, on_bad=bad.append)] == ["a", "c"]
    assert [str(line) for line in bad] == [
        f"{path}, line 2: not valid JSON (Expecting property name enclosed in double quotes at character 14)",
        f"{path}, line 3: not UTF-8 text (byte 0xff at byte 1)",
    ]


def test_a_broken_samples_line_is_redone_not_a_crash(tmp_path, caplog) -> None:
    from eval.runner import run_resumable

    class Item:
        def __init__(self, id_: str) -> None:
            self.id = id_

    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"id": "q0", "score": 1}\n{"id": "q1", "sc\n{"id": "q2", "score": 1}\n')
    redone: list[str] = []
    results = run_resumable([Item(f"q{i}") for i in range(3)], lambda item: redone.append(item.id) or
                            {"id": item.id, "score": 2}, samples_path=samples)
    assert redone == ["q1"] and [r["score"] for r in results] == [1, 2, 1]
    assert "samples.jsonl, line 2: not valid JSON" in caplog.text


# ---------------------------------------------------------------------------------------------- the consumers


def test_eval_geo_counts_a_bad_image_once_as_a_bad_input(tmp_path, photos_dir, tiny_vlm) -> None:
    from eval.geo_eval import Truth, images_by_id, locate_worker
    from eval.runner import run_resumable
    from gaea.assistant import Assistant
    from gaea.backends import load_backend

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos_dir / AREZZO[0], folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    truths = [Truth("good", 43.46, 11.88), Truth("bad", 43.46, 11.88)]
    images = images_by_id(truths, folder)
    calls: list[object] = []
    assistant = Assistant(load_backend("transformers", model=str(tiny_vlm)))

    def locate(image):
        calls.append(image)
        return assistant.locate(image)

    predictions = tmp_path / "predictions.jsonl"
    first = run_resumable(truths, locate_worker(locate, images), samples_path=predictions)
    assert first[1]["error"].startswith("image: ") and "bad.jpg" in first[1]["error"] and len(calls) == 1
    run_resumable(truths, locate_worker(locate, images), samples_path=predictions)
    lines = [json.loads(line)["id"] for line in predictions.read_text().splitlines()]
    assert lines.count("bad") == 1  # never retried, unlike a model error


def test_finetune_on_an_empty_dataset_is_a_clear_error(tmp_path) -> None:
    from finetune.data import load_samples

    (tmp_path / "qa.jsonl").write_text("")
    with pytest.raises(BadInputError, match="no training sample \\(0 rows left out\\)"):
        load_samples(tmp_path)


def test_hf_copy_stores_each_image_once_and_leftovers_are_removed(tmp_path, photos_dir, shared_data) -> None:
    import datasets

    from gaea.records import QARecord

    out = tmp_path / "data"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,lat,lon\n" + "".join(f"{photos_dir / n},{la},{lo}\n"
                                                    for n, (la, lo) in zip(AREZZO, POSITIONS, strict=True)))
    config = BuildConfig(photos=str(manifest), out=out, osm_file=str(shared_data / "osm" / "kirchberg-no-pois.osm"),
                         progress=False)
    build_dataset(config)
    stale = out / ".hf-interrupted"  # what a kill during the Hugging Face copy leaves
    (stale / "cache").mkdir(parents=True)
    (stale / "cache" / "big.arrow").write_bytes(b"\0" * 1000)
    summary = build_dataset(config)
    assert not stale.exists() and not list(out.glob(".hf-*"))
    records = sum(summary.records.values())
    hf = datasets.load_from_disk(str(out / "hf"))
    assert len(hf) == 3 and sum(len(row) for row in hf["records"]) == records > 3 * 5
    stored = sum(path.stat().st_size for path in (out / "hf").glob("*.arrow"))
    photos = sum((photos_dir / name).stat().st_size for name in AREZZO)
    assert stored < 1.5 * photos  # not once per record
    bench = [QARecord.from_dict(row.fields) for row in open_source(out / "hf").rows()]
    assert len(bench) == records and all(record.evidence for record in bench)
