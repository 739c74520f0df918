"""``gaea osm`` (gaea.osm.cli.main) on the real extracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaea.errors import BadInputError
from gaea.osm import open_osm_source
from gaea.osm.cli import main
from gaea.types import GeoPoint


def test_json_output_is_the_evidence_of_the_nearest_features(shared_data: Path, capsys) -> None:
    path = shared_data / "osm" / "west-oakland.osm.bz2"
    assert main([str(path), "37.8076", "-122.3004", "--radius", "300", "--json", "--limit", "5"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = open_osm_source(path).features(GeoPoint(37.8076, -122.3004), 300.0)[:5]
    assert printed == [json.loads(json.dumps(f.evidence())) for f in expected]
    assert len(printed) == 5


def test_text_output_names_category_and_element(shared_data: Path, capsys) -> None:
    path = shared_data / "osm" / "kirchberg-no-pois.osm"
    assert main([str(path), "48.136", "10.0695", "--keys", "highway", "--limit", "0"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all("highway=" in line and "[way/" in line for line in lines)
    assert any("Haydnstraße" in line for line in lines)
    assert f"{len(lines)} features within 1000 m" in captured.err


def test_bad_point_is_a_clear_error(shared_data: Path) -> None:
    with pytest.raises(BadInputError, match="latitude"):
        main([str(shared_data / "osm" / "kotka.osm.pbf"), "95", "26.95"])
