"""`gaea data build --overpass` against a real HTTP server on 127.0.0.1 replaying saved Overpass answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from overpass_replay import OverpassReplayServer
from test_data_pipeline import AREZZO, check_records, write_gps_copy

from data_pipeline.build import BuildConfig, build_dataset
from gaea.errors import OSMError
from gaea.io import read_jsonl

KIOSK = (41.8954998, 12.5032265)  # shop=florist, way 225576797 in way-03.json (Porta Maggiore, Rome)


def overpass_build(photos: Path, out: Path, server: OverpassReplayServer, cache: Path) -> list[dict]:
    config = BuildConfig(photos=str(photos), out=out, overpass=True, overpass_url=server.url,
                         overpass_cache_dir=str(cache), hf_dataset=False, progress=False)
    build_dataset(config)
    return list(read_jsonl(out / "qa.jsonl"))


def test_the_six_arezzo_photos_cost_one_request_and_a_rerun_none(tmp_path, shared_data: Path) -> None:
    folder = tmp_path / "arezzo"
    folder.mkdir()
    for name in AREZZO:
        shutil.copyfile(shared_data / "photos" / name, folder / name)
    with OverpassReplayServer(shared_data / "overpass" / "json" / "way-03.json") as server:
        records = overpass_build(folder, tmp_path / "a", server, tmp_path / "cache")
        assert len(server.requests) == 1
        assert {r["location"] for r in records} == {"Arezzo, Italy"}
        assert {r["source"] for r in records} == {f"overpass:{server.url}"}
        again = overpass_build(folder, tmp_path / "b", server, tmp_path / "cache")
        assert len(server.requests) == 1  # answered from the disk cache
    assert again == records


def test_photos_near_a_feature_cite_it_with_true_distances(tmp_path, shared_data: Path) -> None:
    answer = shared_data / "overpass" / "json" / "way-03.json"
    folder = tmp_path / "rome"
    for index, (dlat, dlon) in enumerate([(0.0005, 0.0004), (-0.001, 0.002), (0.002, -0.001)]):
        write_gps_copy(shared_data / "photos" / AREZZO[index], folder / f"rome{index}.jpg",
                       KIOSK[0] + dlat, KIOSK[1] + dlon)
    elements = {}
    for element in json.loads(answer.read_text())["elements"]:
        point = element.get("center") or {"lat": element.get("lat"), "lon": element.get("lon")}
        elements[(element["type"], element["id"])] = {"tags": element.get("tags", {}), **point}
    with OverpassReplayServer(answer) as server:
        records = overpass_build(folder, tmp_path / "out", server, tmp_path / "cache")
        assert len(server.requests) == 1
    check_records(records, elements)
    cited = {(e["osm_type"], e["osm_id"]) for r in records for e in r["evidence"] if "osm_id" in e}
    assert ("way", 225576797) in cited
    assert all(r["location"].endswith("Italy") for r in records)


def test_an_overpass_runtime_error_stops_the_build_with_nothing_committed(tmp_path, shared_data: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copyfile(shared_data / "photos" / AREZZO[0], folder / AREZZO[0])
    with OverpassReplayServer(shared_data / "overpass" / "json" / "remark-runtime-error-01.json") as server:
        with pytest.raises(OSMError, match="runtime error"):
            overpass_build(folder, tmp_path / "out", server, tmp_path / "cache")
    assert (tmp_path / "out" / "qa.jsonl").read_bytes() == b""
    assert not (tmp_path / "out" / "progress.jsonl").read_bytes()
