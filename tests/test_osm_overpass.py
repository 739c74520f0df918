"""OverpassSource against a real HTTP server on 127.0.0.1 replaying saved Overpass answers.

The answers are real Overpass responses (../shared/data/overpass); the server injects 429,
504, stalled and reset connections, and records what the client sent.
"""

from __future__ import annotations

import csv
import logging
import math
import pickle
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from overpass_replay import Answer, OverpassReplayServer, Reset, Stall, Status

from gaea.errors import BadInputError, ConfigError, OSMError
from gaea.osm import OSMSource, OverpassSource
from gaea.settings import get_settings
from gaea.types import GeoPoint

#: The kiosk (shop=florist, way 225576797) in way-03.json, near Porta Maggiore, Rome.
KIOSK_ID = 225576797
KIOSK = GeoPoint(41.8954998, 12.5032265)
NEAR_KIOSK = GeoPoint(41.8962, 12.5040)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlmb = math.radians(lon2 - lon1)
    a = math.sin((phi2 - phi1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


@pytest.fixture
def answers(shared_data: Path) -> Path:
    return shared_data / "overpass"


@pytest.fixture
def server(answers: Path) -> Iterator[OverpassReplayServer]:
    with OverpassReplayServer(answers / "json" / "way-03.json") as replay:
        yield replay


@pytest.fixture
def make_source(server: OverpassReplayServer, tmp_path: Path):
    def make(**overrides: object) -> OverpassSource:
        options = {
            "cache_dir": tmp_path / "overpass-cache",
            "timeout_s": 25,
            "min_interval_s": 0.0,
            "retries": 4,
            "backoff_s": 0.01,
            "max_backoff_s": 0.05,
            "http_timeout_s": 10.0,  # generous: a busy CI machine must not turn a slow answer into a retry
        }
        options.update(overrides)
        return OverpassSource(options.pop("url", server.url), **options)

    return make


def bbox_of(query: str) -> tuple[float, float, float, float]:
    match = re.search(r"\[bbox:([-\d.]+),([-\d.]+),([-\d.]+),([-\d.]+)\]", query)
    assert match, query
    return tuple(float(v) for v in match.groups())


def test_features_come_from_the_answer_filtered_by_true_distance(server, make_source) -> None:
    source = make_source()
    assert isinstance(source, OSMSource) and source.name == f"overpass:{server.url}"
    found = source.features(NEAR_KIOSK, 500.0)
    assert [(f.osm_type, f.osm_id) for f in found] == [("way", KIOSK_ID)]
    kiosk = found[0]
    assert kiosk.category == ("shop", "florist")
    assert (kiosk.lat, kiosk.lon) == (KIOSK.lat, KIOSK.lon)
    assert abs(kiosk.distance_m - haversine_m(NEAR_KIOSK.lat, NEAR_KIOSK.lon, kiosk.lat, kiosk.lon)) < 1.0
    assert source.features(NEAR_KIOSK, kiosk.distance_m - 1.0) == []


def test_requests_carry_user_agent_timeout_and_the_query(server, make_source) -> None:
    make_source().features(NEAR_KIOSK, 300.0)
    make_source(user_agent="gaea-tests/1.0 (ci)").features(NEAR_KIOSK, 400.0)
    first, second = server.requests
    assert first.method == "POST" and first.path == "/api/interpreter"
    assert first.headers["User-Agent"] == get_settings().user_agent
    assert second.headers["User-Agent"] == "gaea-tests/1.0 (ci)"
    assert "[timeout:25]" in first.query and "[out:json]" in first.query
    south, west, north, east = bbox_of(first.query)
    assert south < NEAR_KIOSK.lat < north and west < NEAR_KIOSK.lon < east
    assert 'nwr["amenity"]' in first.query and "out tags center" in first.query


def test_a_repeated_query_is_served_from_the_disk_cache(server, make_source, tmp_path: Path) -> None:
    first = make_source().features(NEAR_KIOSK, 500.0)
    again = make_source().features(NEAR_KIOSK, 500.0)  # a new source: only the disk cache is shared
    assert again == first
    assert len(server.requests) == 1
    cached = list((tmp_path / "overpass-cache").glob("*.json"))
    assert len(cached) == 1 and cached[0].read_bytes() == (server.default.path).read_bytes()
    assert not list((tmp_path / "overpass-cache").glob(".*tmp"))


def test_a_source_remembers_answers_in_memory_even_empty_ones(server, make_source, tmp_path: Path) -> None:
    source = make_source()
    far = GeoPoint(43.467448, 11.885127)  # Arezzo: the replayed Rome answer holds nothing near it
    assert source.features(far, 500.0) == []
    for path in (tmp_path / "overpass-cache").glob("*"):
        path.unlink()
    assert source.features(far, 500.0) == []
    assert source.features(NEAR_KIOSK, 500.0)  # another tile: asked for
    assert len(server.requests) == 2


def test_the_six_arezzo_photos_cost_one_request(server, make_source, shared_data: Path) -> None:
    with open(shared_data / "photos" / "expected_gps.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["place"] == "Arezzo"]
    points = [GeoPoint(float(row["lat"]), float(row["lon"])) for row in rows]
    assert len(points) == 6
    results = make_source().features_many(points, 1000.0)
    assert len(server.requests) == 1
    assert results == [[] for _ in points]  # the replayed answer lies in Rome, 200 km away
    south, west, north, east = bbox_of(server.requests[0].query)
    for point in points:
        # Each photo's whole 1 km circle lies inside the one box queried.
        assert haversine_m(point.lat, point.lon, south, point.lon) >= 1000.0
        assert haversine_m(point.lat, point.lon, north, point.lon) >= 1000.0
        assert haversine_m(point.lat, point.lon, point.lat, west) >= 1000.0
        assert haversine_m(point.lat, point.lon, point.lat, east) >= 1000.0


def test_distant_points_cost_one_request_each_and_are_filtered_per_point(server, make_source) -> None:
    arezzo, nakuru = GeoPoint(43.467448, 11.885127), GeoPoint(-0.3713, 36.056417)
    results = make_source().features_many([arezzo, NEAR_KIOSK, nakuru, KIOSK], 800.0)
    assert len(server.requests) == 3  # the two Rome points share a tile
    assert results[0] == [] and results[2] == []
    assert [f.osm_id for f in results[1]] == [KIOSK_ID] and [f.osm_id for f in results[3]] == [KIOSK_ID]
    assert results[3][0].distance_m == pytest.approx(0.0, abs=0.01)


def test_429_504_stall_and_reset_are_retried_until_an_answer(server, make_source) -> None:
    server.queue(Status(429), Status(504), Stall(4.0), Reset(), Status(503))
    found = make_source(retries=5, http_timeout_s=1.5).features(NEAR_KIOSK, 500.0)
    assert [f.osm_id for f in found] == [KIOSK_ID]
    assert len(server.requests) == 6
    assert len({r.query for r in server.requests}) == 1


def test_retry_after_is_honoured(server, make_source) -> None:
    server.queue(Status(429, retry_after="1"))
    make_source(max_backoff_s=5.0).features(NEAR_KIOSK, 500.0)
    first, second = server.requests
    assert second.arrived_at - first.arrived_at >= 0.9


def test_retry_after_as_an_http_date_is_honoured(server, make_source) -> None:
    # Failed before: only delta-seconds were read, a date fell back to the (here 0.01 s) backoff.
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    server.queue(Status(429, retry_after=when))
    make_source(max_backoff_s=5.0).features(NEAR_KIOSK, 500.0)
    first, second = server.requests
    assert second.arrived_at - first.arrived_at >= 0.9


def test_requests_are_paced_by_min_interval(server, make_source) -> None:
    source = make_source(min_interval_s=0.4)
    source.features(NEAR_KIOSK, 300.0)
    source.features(NEAR_KIOSK, 1500.0)  # a larger box, another query: not cached
    first, second = server.requests
    assert second.arrived_at - first.arrived_at >= 0.35


def test_spent_retries_raise_a_clear_error_and_cache_nothing(server, make_source, tmp_path: Path) -> None:
    server.queue(Status(504), Status(504), Status(504))
    with pytest.raises(OSMError, match=r"failed after 3 attempts: HTTP 504"):
        make_source(retries=2).features(NEAR_KIOSK, 500.0)
    assert len(server.requests) == 3
    assert not list((tmp_path / "overpass-cache").glob("*"))
    assert make_source().features(NEAR_KIOSK, 500.0)  # the next call asks again and succeeds
    assert len(server.requests) == 4


def test_a_stalled_server_ends_in_a_timeout_error(server, make_source) -> None:
    server.queue(Stall(2.0), Stall(2.0))
    with pytest.raises(OSMError, match="timed out"):
        make_source(retries=1, http_timeout_s=0.3).features(NEAR_KIOSK, 500.0)
    assert len(server.requests) == 2


def test_a_bad_request_is_not_retried(server, make_source) -> None:
    server.queue(Status(400))
    with pytest.raises(OSMError, match=r"rejected the query \(HTTP 400\): Error: HTTP 400"):
        make_source().features(NEAR_KIOSK, 500.0)
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", ["json", "xml"])
def test_runtime_error_remark_becomes_an_osm_error(server, make_source, answers: Path, kind: str) -> None:
    server.default = Answer(answers / kind / f"remark-runtime-error-01.{kind}")
    source = make_source()
    with pytest.raises(OSMError, match=r'runtime error: Query timed out in "query" at line 4 after 2 seconds'):
        source.features(NEAR_KIOSK, 500.0)
    with pytest.raises(OSMError, match="runtime error"):
        source.features(NEAR_KIOSK, 500.0)
    assert len(server.requests) == 2  # an error answer is never cached


@pytest.mark.parametrize("kind", ["json", "xml"])
def test_runtime_remark_is_logged_and_the_answer_used(server, make_source, answers, caplog, kind: str) -> None:
    server.default = Answer(answers / kind / f"remark-runtime-remark-01.{kind}")
    with caplog.at_level(logging.WARNING, logger="gaea.osm.convert"):
        assert make_source().features(NEAR_KIOSK, 500.0) == []
    assert any("runtime remark: Test" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["json", "xml"])
def test_unknown_remark_becomes_an_osm_error(server, make_source, answers: Path, kind: str) -> None:
    server.default = Answer(answers / kind / f"remark-unknown-01.{kind}")
    with pytest.raises(OSMError, match="unrecognized remark: Test remark"):
        make_source().features(NEAR_KIOSK, 500.0)


def test_xml_answers_give_the_same_features_as_json(server, make_source, answers: Path) -> None:
    source = make_source()
    from_json = source.features(NEAR_KIOSK, 500.0)
    server.default = Answer(answers / "xml" / "way-03.xml")
    from_xml = source.features(NEAR_KIOSK, 1500.0)  # a larger box: a new query, not the cached one
    assert len(server.requests) == 2
    assert from_json and [(f.osm_type, f.osm_id, f.tags, f.lat, f.lon) for f in from_xml] == [
        (f.osm_type, f.osm_id, f.tags, f.lat, f.lon) for f in from_json
    ]


def test_every_saved_answer_parses_into_valid_features(server, make_source, answers: Path) -> None:
    source = make_source()
    saved = sorted(p for p in (answers / "json").glob("*.json") if not p.name.startswith("remark-"))
    saved = [p for p in saved if p.name != "way-04.json"]  # its empty "center" is checked below
    for path in saved:
        server.queue(Answer(path))
        for feature in source.query_features(f"[out:json];// replay {path.name}\nnode(1);out;"):
            assert feature.category is not None
            assert -90 <= feature.lat <= 90 and -180 <= feature.lon <= 180
    assert len(server.requests) == len(saved)


def test_plain_buildings_and_street_furniture_in_answers_are_dropped(server, make_source, answers: Path) -> None:
    source = make_source()
    server.queue(Answer(answers / "json" / "way-02.json"), Answer(answers / "json" / "node-01.json"))
    assert source.query_features("[out:json];way(317146077);(._;>;);out;") == []  # building=yes only
    assert source.query_features("[out:json];node(50.74,7.17,50.75,7.18);out;") == []  # a turning circle


def test_a_malformed_answer_is_an_osm_error(server, make_source, answers: Path) -> None:
    server.default = Answer(answers / "json" / "way-04.json")
    with pytest.raises(OSMError, match="malformed"):
        make_source().features(NEAR_KIOSK, 500.0)


def test_keys_shape_the_query(server, make_source) -> None:
    make_source().features(NEAR_KIOSK, 500.0, keys=["shop", "cuisine"])
    query = server.requests[0].query
    assert 'nwr["shop"]' in query and 'nwr["cuisine"]' in query
    assert 'nwr["amenity"]' not in query and "highway" not in query


def test_bad_arguments_are_rejected_before_any_request(server, make_source) -> None:
    with pytest.raises(ConfigError, match="tile_deg"):
        make_source(tile_deg=0)
    with pytest.raises(ConfigError, match="retries"):
        make_source(retries=-1)
    with pytest.raises(ConfigError, match="ftp://"):
        OverpassSource("ftp://overpass.example/api/interpreter")
    source = make_source()
    with pytest.raises(BadInputError, match="too large"):
        source.features(NEAR_KIOSK, 80_000.0)
    with pytest.raises(BadInputError, match="radius_m"):
        source.features(NEAR_KIOSK, -1.0)
    with pytest.raises(BadInputError, match="colour"):
        source.features(NEAR_KIOSK, keys=["colour"])
    assert server.requests == []


def test_a_source_survives_pickling_into_worker_processes(server, make_source) -> None:
    source = make_source()
    first = source.features(NEAR_KIOSK, 500.0)
    copy = pickle.loads(pickle.dumps(source))
    assert copy.features(NEAR_KIOSK, 500.0) == first  # served by the shared disk cache
    assert copy.features(NEAR_KIOSK, 2000.0) == first  # a new query through a fresh connection
    assert len(server.requests) == 2


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/interpreter"
    source = OverpassSource(url, cache_dir=tmp_path, min_interval_s=0.0, retries=1, backoff_s=0.01, max_backoff_s=0.02)
    with pytest.raises(OSMError, match=rf"Overpass request to {re.escape(url)} failed after 2 attempts"):
        source.features(NEAR_KIOSK, 500.0)
    assert source.requests_sent == 2


def test_defaults_come_from_settings(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAEA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GAEA_OVERPASS_URL", "https://overpass.example/api/interpreter")
    source = OverpassSource()
    assert source.cache_dir == tmp_path / "overpass"
    assert source.name == "overpass:https://overpass.example/api/interpreter"
    assert source.user_agent == get_settings().user_agent
    assert source.http_timeout_s > source.timeout_s == 180


def test_credentials_in_the_url_reach_the_server_and_no_message(server, make_source) -> None:
    url = server.url.replace("http://", "http://osm:p4ss-7777@") + "?key=s3cret-8888"
    source = make_source(url=url)
    assert [f.osm_id for f in source.features(NEAR_KIOSK, 500.0)] == [KIOSK_ID]
    sent = server.requests[0]
    assert sent.path == "/api/interpreter?key=s3cret-8888"
    assert sent.headers["Authorization"] == "Basic b3NtOnA0c3MtNzc3Nw=="  # osm:p4ss-7777
    server.queue(Status(400))
    with pytest.raises(OSMError) as error:
        source.features(NEAR_KIOSK, 1500.0)
    assert "p4ss-7777" not in str(error.value) and "s3cret-8888" not in str(error.value)
    assert "p4ss" not in source.name and "s3cret" not in source.name
