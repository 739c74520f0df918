"""``gaea osm near`` on the real extracts."""

from __future__ import annotations

import json
from pathlib import Path

from gaea.cli import main
from gaea.osm import open_osm_source
from gaea.types import GeoPoint


def test_json_output_is_the_evidence_of_the_nearest_features(shared_data: Path, capsys) -> None:
    path = shared_data / "osm" / "west-oakland.osm.bz2"
    argv = ["osm", "near", "37.8076", "-122.3004", "--osm-file", str(path), "--radius-m", "300", "--json",
            "--limit", "5"]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = open_osm_source(path).features(GeoPoint(37.8076, -122.3004), 300.0)[:5]
    assert printed == [json.loads(json.dumps(f.evidence())) for f in expected]
    assert len(printed) == 5


def test_text_output_names_category_and_element(shared_data: Path, capsys) -> None:
    path = shared_data / "osm" / "kirchberg-no-pois.osm"
    assert main(["osm", "near", "48.136", "10.0695", "--osm-file", str(path), "--keys", "highway", "--limit", "0"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all("highway=" in line and "[way/" in line for line in lines)
    assert any("Haydnstraße" in line for line in lines)
    assert f"{len(lines)} features within 1000 m" in captured.err


def test_bad_point_is_a_clear_error(shared_data: Path, capsys) -> None:
    assert main(["osm", "near", "95", "26.95", "--osm-file", str(shared_data / "osm" / "kotka.osm.pbf")]) == 2
    assert capsys.readouterr().err.startswith("gaea osm near: error: point (95.0, 26.95): latitude")
