"""`gaea data build` on the real photos and OSM extracts in ../shared/data.

The shared photos lie outside the extracts, so each test writes EXIF GPS positions inside an extract
into copies of them. Records are then checked against the extract files themselves, read here
independently of gaea.osm (ElementTree for OSM XML, pyosmium for PBF).
"""

from __future__ import annotations

import bz2
import json
import math
import random
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import osmium
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from data_pipeline.build import BuildConfig, build_dataset
from gaea.errors import BadInputError, ConfigError
from gaea.io import read_jsonl
from gaea.osm import open_osm_source, sanitize_text
from gaea.records import QUESTION_TYPES, QARecord

EARTH_RADIUS_M = 6_371_008.8
AREZZO = ["DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "DSCN0025.jpg", "DSCN0027.jpg", "DSCN0029.jpg"]


# ---------------------------------------------------------------------------------------------- helpers


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2, dlmb = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((phi2 - phi1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 1_000_000), 1_000_000)


def write_gps_copy(source: Path, target: Path, lat: float, lon: float) -> Path:
    """A copy of `source` whose EXIF GPS block says (lat, lon)."""
    with Image.open(source) as image:
        exif = image.getexif()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps.clear()
        gps.update({1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W", 4: _dms(lon)})
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, exif=exif, quality=85)
    return target


def points_inside(extract: Path, count: int, *, seed: int = 0) -> list[tuple[float, float]]:
    """Positions a few tens of metres from features of the extract (so inside it, with features around)."""
    features = open_osm_source(extract).all_features
    rng = random.Random(seed)
    chosen = rng.sample(features, min(count, len(features)))
    return [(f.lat + rng.uniform(-3e-4, 3e-4), f.lon + rng.uniform(-3e-4, 3e-4)) for f in chosen]


def photo_folder(photos: Path, folder: Path, positions: list[tuple[float, float]], *, bad: bool = True) -> Path:
    """Copies of the Arezzo photos placed at `positions`, plus (with `bad`) photos that must be skipped."""
    for index, (lat, lon) in enumerate(positions):
        write_gps_copy(photos / AREZZO[index % len(AREZZO)], folder / f"photo_{index:03d}.jpg", lat, lon)
    if bad:
        shutil.copyfile(photos / "Canon_40D.jpg", folder / "Canon_40D.jpg")
        shutil.copyfile(photos / "45-gps_ifd.jpg", folder / "45-gps_ifd.jpg")
        write_gps_copy(photos / AREZZO[0], folder / "impossible.jpg", 95.0, 10.0)
        good = (folder / "photo_000.jpg").read_bytes()
        (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
        (folder / "not_an_image.jpg").write_text("this is not a JPEG")
    return folder


def osm_xml_elements(path: Path) -> dict[tuple[str, int], dict]:
    """(type, id) -> {"tags", "lat", "lon"} of every element in an OSM XML file."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as handle:
        root = ET.parse(handle).getroot()
    elements = {}
    for element in root:
        if element.tag in ("node", "way", "relation"):
            tags = {tag.get("k"): tag.get("v") for tag in element.findall("tag")}
            lat, lon = element.get("lat"), element.get("lon")
            elements[(element.tag, int(element.get("id")))] = {
                "tags": tags, "lat": float(lat) if lat else None, "lon": float(lon) if lon else None,
            }
    return elements


def osm_pbf_elements(path: Path) -> dict[tuple[str, int], dict]:
    elements = {}
    for obj in osmium.FileProcessor(str(path)):
        if len(obj.tags):
            kind = {"n": "node", "w": "way", "r": "relation"}[obj.type_str()]
            location = obj.location if kind == "node" else None
            elements[(kind, obj.id)] = {
                "tags": {tag.k: tag.v for tag in obj.tags},
                "lat": location.lat if location is not None else None,
                "lon": location.lon if location is not None else None,
            }
    return elements


def check_records(records: list[dict], elements: dict[tuple[str, int], dict]) -> Counter:
    """Assert the dataset rules on every record; return counts per type."""
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids)), "record ids must be unique"
    counts: Counter = Counter()
    for record in records:
        parsed = QARecord.from_dict(record)
        assert parsed.question_type in QUESTION_TYPES
        counts[parsed.question_type] += 1
        assert record["evidence"], f"record without evidence: {record}"
        if parsed.question_type == "MCQ":
            assert len(parsed.options) == 4 and len(set(parsed.options)) == 4
            assert parsed.answer in parsed.options
        else:
            assert parsed.options is None
        if parsed.question_type == "TF":
            assert parsed.answer in ("True", "False")
        for evidence in record["evidence"]:
            if "osm_id" in evidence:
                check_osm_evidence(record, evidence, elements)
            else:
                assert set(evidence) == {"kind", "value", "source"} and evidence["value"]
    return counts


def check_osm_evidence(record: dict, evidence: dict, elements: dict[tuple[str, int], dict]) -> None:
    assert set(evidence) >= {"osm_type", "osm_id", "name", "tags", "lat", "lon", "distance_m"}
    recomputed = haversine_m(record["lat"], record["lon"], evidence["lat"], evidence["lon"])
    assert abs(recomputed - evidence["distance_m"]) <= 1.0, (recomputed, evidence)
    element = elements.get((evidence["osm_type"], evidence["osm_id"]))
    assert element is not None, f"{evidence['osm_type']} {evidence['osm_id']} is not in the extract"
    for key, value in evidence["tags"].items():
        assert sanitize_text(element["tags"].get(key, "")) == value, (key, value, element["tags"])
    if evidence["name"]:
        assert sanitize_text(element["tags"].get("name", "")) == evidence["name"]
    if "name" in evidence["tags"]:  # the name was used: it shows in the question, the answer or the options
        shown = [record["question"], record["answer"], *(record["options"] or [])]
        assert any(evidence["name"] in text for text in shown)
    if element["lat"] is not None:
        assert abs(element["lat"] - evidence["lat"]) < 1e-6 and abs(element["lon"] - evidence["lon"]) < 1e-6


def build(photos: Path, out: Path, osm_file: Path, **options) -> tuple[list[dict], list[dict]]:
    config = BuildConfig(photos=str(photos), out=out, osm_file=str(osm_file), progress=False, **options)
    build_dataset(config)
    return list(read_jsonl(out / "qa.jsonl")), list(read_jsonl(out / "skipped.jsonl"))


# ---------------------------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def oakland(tmp_path_factory, shared_data: Path):
    """A build over photos inside West Oakland plus five photos that must be skipped."""
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    root = tmp_path_factory.mktemp("oakland")
    folder = photo_folder(shared_data / "photos", root / "photos", points_inside(extract, 12))
    records, skipped = build(folder, root / "out", extract, chunk_size=5, workers=1)
    return root / "out", records, skipped, osm_xml_elements(extract)


def test_oakland_records_follow_the_rules_and_cite_real_elements(oakland) -> None:
    out, records, _, elements = oakland
    counts = check_records(records, elements)
    assert set(counts) == set(QUESTION_TYPES)
    assert counts["LOC"] == counts["LVQA"] == 12
    assert sum(1 for r in records for e in r["evidence"] if "osm_id" in e) > 50
    for record in records:
        assert record["location"].endswith("United States")
        assert (out / record["image"]).is_file() and not Path(record["image"]).is_absolute()
        assert record["source"] == "osm-file:west-oakland.osm.bz2"


def test_true_false_is_balanced_exactly(oakland) -> None:
    _, records, _, _ = oakland
    answers = Counter(r["answer"] for r in records if r["question_type"] == "TF")
    assert answers["True"] == answers["False"] > 0


def test_bad_photos_are_listed_in_skipped_with_their_reason(oakland) -> None:
    out, records, skipped, _ = oakland
    reasons = {entry["photo"]: entry["reason"] for entry in skipped}
    assert reasons == {
        "Canon_40D.jpg": "no_gps",
        "45-gps_ifd.jpg": "empty_gps",
        "impossible.jpg": "bad_coordinates",
        "truncated.jpg": "corrupt",
        "not_an_image.jpg": "not_an_image",
    }
    assert all(entry["detail"].startswith(entry["photo"]) for entry in skipped)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos_read"] == 17 and summary["photos_used"] == 12
    assert summary["skipped"] == {"bad_coordinates": 1, "corrupt": 1, "empty_gps": 1, "no_gps": 1, "not_an_image": 1}
    assert summary["records"] == dict(Counter(r["question_type"] for r in records))
    assert not any(r["image"].endswith(name) for r in records for name in reasons)


def test_answers_state_only_what_their_evidence_holds(oakland) -> None:
    _, records, _, _ = oakland
    for record in records:
        values = [str(e.get("value", "")) for e in record["evidence"]] + [e.get("name", "") for e in record["evidence"]]
        qtype = record["question_type"]
        if qtype in ("SVQA", "MCQ") and "name" in record["question"].lower():
            assert record["answer"] in values
        if qtype == "LOC":
            city, country = record["location"].split(", ")
            assert city in values and country in values
            assert f"{record['lat']:.5f}, {record['lon']:.5f}" in record["answer"]
        if qtype == "LVQA":
            for evidence in record["evidence"]:
                if evidence.get("name"):
                    assert evidence["name"] in record["answer"]
                elif "kind" in evidence and evidence["kind"] != "osm_absence":
                    assert evidence["value"] in record["answer"]


def test_hf_dataset_and_card_hold_every_record_with_its_image_stored_once(oakland) -> None:
    import datasets

    out, records, _, _ = oakland
    dataset = datasets.load_from_disk(str(out / "hf"))
    images = list(dict.fromkeys(r["image"] for r in records))
    assert len(dataset) == len(images) == 12 and sum(len(row) for row in dataset["records"]) == len(records)
    row = dataset[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (640, 480)
    first = [r for r in records if r["image"] == images[0]]
    assert [r["question"] for r in row["records"]] == [r["question"] for r in first]
    assert json.loads(row["records"][0]["evidence"]) == first[0]["evidence"]
    # Each image is stored once: the saved arrow files hold little more than the distinct photos.
    stored = sum(f.stat().st_size for f in (out / "hf").glob("*.arrow"))
    photos = sum((out / image).stat().st_size for image in images)
    assert photos <= stored < photos * 1.5
    card = (out / "README.md").read_text()
    for qtype, count in Counter(r["question_type"] for r in records).items():
        assert f"| {qtype} | {count} |" in card
    assert f"| osm-file:west-oakland.osm.bz2 | {len(records)} |" in card


def test_kirchberg_without_pois_still_yields_location_and_context_questions(tmp_path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "kirchberg-no-pois.osm"
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", points_inside(extract, 4), bad=False)
    records, skipped = build(folder, tmp_path / "out", extract, hf_dataset=False)
    assert not skipped
    counts = check_records(records, osm_xml_elements(extract))
    assert counts["LOC"] == 4 and counts["LVQA"] == 4 and counts["MCQ"] and counts["SVQA"]
    assert all(r["location"].endswith("Germany") for r in records)
    kinds = {e.get("kind") for r in records for e in r["evidence"]}
    assert {"country", "continent", "hemisphere_ns", "driving_side", "coordinates"} <= kinds
    tf = Counter(r["answer"] for r in records if r["question_type"] == "TF")
    assert tf["True"] == tf["False"] > 0
    # No shop, cafe or other point of interest exists here, so none may appear in an answer.
    poi_keys = {"amenity", "shop", "tourism", "historic", "leisure"}
    assert not any(set(e.get("tags", {})) & poi_keys for r in records for e in r["evidence"])


def test_kotka_pbf_records_cite_elements_of_the_pbf(tmp_path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "kotka.osm.pbf"
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", points_inside(extract, 8, seed=3), bad=False)
    records, _ = build(folder, tmp_path / "out", extract, hf_dataset=False, workers=2, chunk_size=3)
    counts = check_records(records, osm_pbf_elements(extract))
    assert counts["LOC"] == 8
    assert all(r["location"].endswith("Finland") for r in records)
    assert any("osm_id" in e for r in records for e in r["evidence"])


def test_same_seed_same_dataset_whatever_the_workers_and_chunks(tmp_path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", points_inside(extract, 9, seed=5))
    one, _ = build(folder, tmp_path / "a", extract, hf_dataset=False, workers=1, chunk_size=4)
    two, _ = build(folder, tmp_path / "b", extract, hf_dataset=False, workers=2, chunk_size=2)
    other_seed, _ = build(folder, tmp_path / "c", extract, hf_dataset=False, seed=1)
    assert one == two
    assert [r["question"] for r in one] != [r["question"] for r in other_seed]
    assert (tmp_path / "a" / "qa.jsonl").read_bytes() == (tmp_path / "b" / "qa.jsonl").read_bytes()


def test_types_and_per_type_choose_what_is_generated(tmp_path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", points_inside(extract, 3), bad=False)
    records, _ = build(folder, tmp_path / "out", extract, hf_dataset=False, types=("mcq", "loc"), per_type=3)
    counts = Counter(r["question_type"] for r in records)
    assert set(counts) == {"MCQ", "LOC"} and counts["MCQ"] == 9 and counts["LOC"] == 3


def test_csv_manifest_input_with_bad_rows(tmp_path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    (lat, lon), = points_inside(extract, 1)
    photos = shared_data / "photos"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,lat,lon\n"
        f"{photos / 'Canon_40D.jpg'},{lat},{lon}\n"
        f"{photos / 'DSCN0010.jpg'},north,{lon}\n"
        f"{photos / 'DSCN0012.jpg'},{lat},200\n"
        f"missing.jpg,{lat},{lon}\n"
        f"{photos / 'DSCN0021.jpg'},,\n"
    )
    records, skipped = build(manifest, tmp_path / "out", extract, hf_dataset=False)
    # A row without coordinates falls back to the photo's own EXIF GPS (DSCN0021 was taken in Arezzo).
    assert {round(r["lat"], 6) for r in records} == {round(lat, 6), 43.467082}
    assert [e["reason"] for e in skipped] == ["bad_coordinates", "bad_coordinates", "missing"]


def test_a_changed_setting_refuses_to_mix_into_an_existing_build(oakland, shared_data: Path) -> None:
    out = oakland[0]
    config = BuildConfig(photos=str(out.parent / "photos"), out=out, seed=7, progress=False,
                         osm_file=str(shared_data / "osm" / "west-oakland.osm.bz2"))
    with pytest.raises(ConfigError, match="seed"):
        build_dataset(config)


def test_bad_settings_are_clear_errors(tmp_path, shared_data: Path) -> None:
    extract = str(shared_data / "osm" / "west-oakland.osm.bz2")
    with pytest.raises(ConfigError, match="exactly one OSM source"):
        BuildConfig(photos=str(tmp_path), out=tmp_path / "o")
    with pytest.raises(ConfigError, match="unknown question type"):
        BuildConfig(photos=str(tmp_path), out=tmp_path / "o", osm_file=extract, types=("mcq", "essay"))
    with pytest.raises(ConfigError, match="no such OSM file"):
        BuildConfig(photos=str(tmp_path), out=tmp_path / "o", osm_file=str(tmp_path / "nope.osm"))
    with pytest.raises(BadInputError, match="absent: no such file or folder"):
        BuildConfig(photos=str(tmp_path / "absent"), out=tmp_path / "o", osm_file=extract)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extract", ["west-oakland.osm.bz2", "kotka.osm.pbf"])
def test_fast_lookup_finds_what_features_many_finds(shared_data: Path, extract: str) -> None:
    from data_pipeline.lookup import FeatureTable, table_for
    from gaea.types import GeoPoint

    source = open_osm_source(shared_data / "osm" / extract)
    positions = points_inside(shared_data / "osm" / extract, 25, seed=8)
    fast = table_for(source).nearby([p[0] for p in positions], [p[1] for p in positions], 600.0)
    reference = source.features_many([GeoPoint(*p) for p in positions], 600.0)
    _, via_results = FeatureTable.from_results(reference)
    for mine, theirs, rebuilt in zip(fast, reference, via_results, strict=True):
        found = [(mine.table.features[row].osm_type, mine.table.features[row].osm_id) for row in mine.rows]
        assert sorted(found) == sorted((f.osm_type, f.osm_id) for f in theirs)
        assert np.allclose(np.sort(mine.distances), sorted(f.distance_m for f in theirs), atol=0.01)
        assert mine.present_bits == rebuilt.present_bits
        labels = [mine.table.row_label[row] for row in mine.rows[mine.label_first]]
        assert labels == [rebuilt.table.row_label[row] for row in rebuilt.rows[rebuilt.label_first]]
        assert len(labels) == len(set(labels))


def test_a_folder_without_usable_photos_builds_an_empty_dataset(tmp_path: Path, shared_data: Path) -> None:
    import datasets

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(shared_data / "photos" / "Canon_40D.jpg", folder / "Canon_40D.jpg")
    records, skipped = build(folder, tmp_path / "out", shared_data / "osm" / "kirchberg-no-pois.osm")
    assert records == [] and [entry["reason"] for entry in skipped] == ["no_gps"]
    assert len(datasets.load_from_disk(str(tmp_path / "out" / "hf"))) == 0
    assert "- records: 0" in (tmp_path / "out" / "README.md").read_text()


def _approximate_points(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """Every node's position, and for each way the mean of its nodes (an independent, rough point)."""
    with bz2.open(path, "rb") as handle:
        root = ET.parse(handle).getroot()
    nodes = {int(n.get("id")): (float(n.get("lat")), float(n.get("lon"))) for n in root.iter("node")}
    points = {("node", key): value for key, value in nodes.items()}
    for way in root.iter("way"):
        refs = [nodes[int(nd.get("ref"))] for nd in way.findall("nd") if int(nd.get("ref")) in nodes]
        if refs:
            points[("way", int(way.get("id")))] = (sum(p[0] for p in refs) / len(refs),
                                                   sum(p[1] for p in refs) / len(refs))
    return points


def test_absence_is_claimed_only_where_the_extract_covers_the_whole_circle(oakland, tmp_path, shared_data) -> None:
    _, records, _, _ = oakland  # radius 1 km: every circle reaches past the extract
    assert not any(e.get("kind") == "osm_absence" for r in records for e in r["evidence"])
    assert not any(r["question_type"] == "MCQ" and "can be found within" in r["question"] for r in records)

    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    elements, points = osm_xml_elements(extract), _approximate_points(extract)
    features = open_osm_source(extract).all_features
    lats, lons = [f.lat for f in features], [f.lon for f in features]
    centre = ((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
    positions = [(centre[0] + dlat, centre[1] + dlon) for dlat in (-5e-4, 0, 5e-4) for dlon in (-5e-4, 5e-4)]
    folder = photo_folder(shared_data / "photos", tmp_path / "photos", positions, bad=False)
    near, _ = build(folder, tmp_path / "out", extract, hf_dataset=False, radius_m=250.0, per_type=4)
    check_records(near, elements)
    absences = [(r, e) for r in near for e in r["evidence"] if e.get("kind") == "osm_absence"]
    assert absences
    for record, evidence in absences:
        assert record["answer"] == "False"
        tag = evidence["value"].split()[1]
        key, value = tag.split("=")
        for element_id, element in elements.items():
            if element["tags"].get(key) == value and element_id in points:
                lat, lon = points[element_id]
                assert haversine_m(record["lat"], record["lon"], lat, lon) > 250.0 - 60.0, (record, element_id)


def test_photos_outside_the_extract_are_warned_about_and_none_inside_is_said_plainly(
        tmp_path: Path, shared_data: Path, capsys) -> None:
    from gaea.cli import main

    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    photos = shared_data / "photos"
    (lat, lon), = points_inside(extract, 1)
    far = "".join(f"{photos / name},,\n" for name in AREZZO[:3])  # their own EXIF GPS: Arezzo, Italy
    for name, rows, inside in (("none", far, 0), ("some", far + f"{photos / 'Canon_40D.jpg'},{lat},{lon}\n", 1)):
        manifest = tmp_path / f"{name}.csv"
        manifest.write_text("path,lat,lon\n" + rows)
        assert main(["data", "build", "--images", str(manifest), "--out", str(tmp_path / name), "--osm-file",
                     str(extract), "--no-hf", "--quiet"]) == 0
        out, err = capsys.readouterr()
        warnings = [line for line in err.splitlines() if str(extract) in line]
        assert len(warnings) == 1 and warnings[0].startswith("gaea data build: warning:")
        plainly = [line for line in out.splitlines() if line.startswith("no photo lies within the OSM extract")]
        if inside:
            assert "3 of 4 photos lie outside" in warnings[0] and not plainly
        else:
            assert "all 3 photos used lie beyond its area" in warnings[0]
            assert plainly == [warnings[0].split("warning: ", 1)[1]]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["photos_outside"] == 3 and summary["photos_used"] == 3 + inside
