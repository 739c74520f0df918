"""Local OSM extracts (read with pyosmium, XML and PBF alike) on the real files in ../shared/data/osm.

Every check re-reads the extract independently (xml.etree / bz2, or plain pyosmium) and
recomputes distances with its own haversine, so the source under test is never its own oracle.
"""

from __future__ import annotations

import bz2
import json
import math
import pickle
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import osmium
import pytest

from gaea.errors import BadInputError, OSMError
from gaea.osm import (
    DISTINGUISHING_KEYS,
    LocalOSMSource,
    OSMFeature,
    OSMSource,
    feature_from_element,
    open_osm_source,
)
from gaea.types import GeoPoint

EXTRACTS = ["west-oakland.osm.bz2", "kirchberg-no-pois.osm", "kotka.osm.pbf"]
POI_KEYS = ("amenity", "shop", "tourism")


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The test's own great-circle distance (mean Earth radius), independent of gaea."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


@dataclass
class RawExtract:
    """What the file itself says: tags of every element, node positions, the declared bounds."""

    tags: dict[tuple[str, int], dict[str, str]]
    nodes: dict[int, tuple[float, float]]
    way_nodes: dict[int, list[int]]
    bounds: tuple[float, float, float, float]  # south, west, north, east

    @property
    def centre(self) -> GeoPoint:
        south, west, north, east = self.bounds
        return GeoPoint((south + north) / 2, (west + east) / 2)


def read_raw(path: Path) -> RawExtract:
    return _read_raw_pbf(path) if path.suffix == ".pbf" else _read_raw_xml(path)


def _read_raw_xml(path: Path) -> RawExtract:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as handle:
        root = ET.parse(handle).getroot()
    tags, nodes, way_nodes = {}, {}, {}
    for element in root:
        if element.tag not in ("node", "way", "relation"):
            continue
        osm_id = int(element.get("id"))
        tags[(element.tag, osm_id)] = {tag.get("k"): tag.get("v") for tag in element.iter("tag")}
        if element.tag == "node":
            nodes[osm_id] = (float(element.get("lat")), float(element.get("lon")))
        elif element.tag == "way":
            way_nodes[osm_id] = [int(nd.get("ref")) for nd in element.iter("nd")]
    b = root.find("bounds")
    bounds = tuple(float(b.get(k)) for k in ("minlat", "minlon", "maxlat", "maxlon"))
    return RawExtract(tags, nodes, way_nodes, bounds)


def _read_raw_pbf(path: Path) -> RawExtract:
    tags, nodes, way_nodes = {}, {}, {}
    for obj in osmium.FileProcessor(str(path)):
        kind = "node" if obj.is_node() else "way" if obj.is_way() else "relation"
        tags[(kind, obj.id)] = {tag.k: tag.v for tag in obj.tags}
        if obj.is_node():
            nodes[obj.id] = (obj.location.lat, obj.location.lon)
        elif obj.is_way():
            way_nodes[obj.id] = [n.ref for n in obj.nodes]
    reader = osmium.io.Reader(str(path))
    box = reader.header().box()
    reader.close()
    bounds = (box.bottom_left.lat, box.bottom_left.lon, box.top_right.lat, box.top_right.lon)
    return RawExtract(tags, nodes, way_nodes, bounds)


@pytest.fixture(scope="module", params=EXTRACTS)
def extract(request: pytest.FixtureRequest, shared_data: Path) -> tuple[Path, LocalOSMSource, RawExtract]:
    path = shared_data / "osm" / request.param
    return path, open_osm_source(path), read_raw(path)


def test_extract_loads_with_its_name(extract) -> None:
    path, source, _ = extract
    assert isinstance(source, OSMSource)
    assert source.name == f"osm-file:{path.name}"
    assert len(source) > 0


def test_features_near_the_centre_are_sorted_within_radius_with_true_distances(extract) -> None:
    _, source, raw = extract
    centre = raw.centre
    found = source.features(centre, 1000.0)
    assert found, "an extract's own centre must have features within 1 km"
    distances = [f.distance_m for f in found]
    assert distances == sorted(distances)
    for feature in found:
        assert feature.distance_m <= 1000.0
        assert abs(haversine_m(centre.lat, centre.lon, feature.lat, feature.lon) - feature.distance_m) < 1.0


def test_radius_search_finds_exactly_what_a_brute_force_scan_finds(extract) -> None:
    _, source, raw = extract
    south, west, _, _ = raw.bounds
    corner = GeoPoint(south, west)
    for radius in (50.0, 300.0, 1500.0):
        expected = {
            (f.osm_type, f.osm_id)
            for f in source.all_features
            if haversine_m(corner.lat, corner.lon, f.lat, f.lon) <= radius - 0.01
        }
        found = {(f.osm_type, f.osm_id) for f in source.features(corner, radius)}
        assert expected <= found
        assert all(
            haversine_m(corner.lat, corner.lon, f.lat, f.lon) <= radius + 0.01 for f in source.features(corner, radius)
        )


def test_every_feature_exists_in_the_file_with_its_name_tags_and_place(extract) -> None:
    _, source, raw = extract
    for feature in source.all_features:
        raw_tags = raw.tags[(feature.osm_type, feature.osm_id)]
        assert feature.name == raw_tags.get("name", raw_tags.get("name:en", ""))
        assert set(feature.tags) <= set(DISTINGUISHING_KEYS)
        for key, value in feature.tags.items():
            assert raw_tags[key] == value
        if feature.osm_type == "node":
            assert (feature.lat, feature.lon) == pytest.approx(raw.nodes[feature.osm_id], abs=1e-7)
        elif feature.osm_type == "way":
            lats, lons = zip(*(raw.nodes[n] for n in raw.way_nodes[feature.osm_id] if n in raw.nodes), strict=True)
            assert min(lats) - 1e-7 <= feature.lat <= max(lats) + 1e-7
            assert min(lons) - 1e-7 <= feature.lon <= max(lons) + 1e-7


def test_every_point_of_interest_node_in_the_file_is_found(extract) -> None:
    _, source, raw = extract
    centre = raw.centre
    expected = {
        ("node", osm_id)
        for (kind, osm_id), tags in raw.tags.items()
        if kind == "node"
        and any(tags.get(key, "no") != "no" for key in POI_KEYS)
        and haversine_m(centre.lat, centre.lon, *raw.nodes[osm_id]) <= 999.0
    }
    found = {(f.osm_type, f.osm_id) for f in source.features(centre, 1000.0)}
    assert expected <= found


def test_features_many_equals_features_point_by_point(extract) -> None:
    _, source, raw = extract
    south, west, north, east = raw.bounds
    points = [raw.centre, GeoPoint(south, west), GeoPoint(north, east), GeoPoint(0.0, 0.0), raw.centre]
    batched = source.features_many(points, 600.0)
    assert batched == [source.features(point, 600.0) for point in points]
    assert batched[3] == []
    assert batched[0] == batched[4]


def test_keys_filter_keeps_only_features_with_those_keys(extract) -> None:
    _, source, raw = extract
    everything = source.features(raw.centre, 2000.0)
    roads = source.features(raw.centre, 2000.0, keys=["highway"])
    assert roads == [f for f in everything if "highway" in f.tags]
    assert roads


def test_kirchberg_has_no_points_of_interest_but_has_roads(shared_data: Path) -> None:
    path = shared_data / "osm" / "kirchberg-no-pois.osm"
    raw = read_raw(path)
    found = open_osm_source(path).features(raw.centre, 1000.0)
    assert not [f for f in found if any(key in f.tags for key in POI_KEYS)]
    roads = [f for f in found if f.category is not None and f.category[0] == "highway"]
    assert roads
    named_roads = {f.name for f in roads if f.name}
    raw_road_names = {
        tags["name"] for (kind, _), tags in raw.tags.items() if kind == "way" and "highway" in tags and "name" in tags
    }
    assert named_roads and named_roads <= raw_road_names
    # Plain buildings are in the file but are not features.
    assert any(tags.get("building") == "yes" and "name" not in tags for tags in raw.tags.values())
    assert not [f for f in found if "building" in f.tags]


def test_west_oakland_categories_come_from_the_most_telling_tag(shared_data: Path) -> None:
    source = open_osm_source(shared_data / "osm" / "west-oakland.osm.bz2")
    categories = {f.category for f in source.all_features}
    assert ("amenity", "cafe") in categories
    worship = [f for f in source.all_features if f.tags.get("amenity") == "place_of_worship"]
    assert worship and all(f.category == ("amenity", "place_of_worship") for f in worship)
    assert all("religion" in f.tags for f in worship)


def test_opening_the_same_file_again_reuses_what_was_read(shared_data: Path) -> None:
    path = shared_data / "osm" / "kotka.osm.pbf"
    assert open_osm_source(path).all_features is open_osm_source(str(path)).all_features


def test_from_features_answers_like_the_file_source(shared_data: Path) -> None:
    path = shared_data / "osm" / "west-oakland.osm.bz2"
    source = open_osm_source(path)
    copy = LocalOSMSource.from_features(source.all_features, name="copy")
    centre = read_raw(path).centre
    assert copy.features(centre, 800.0) == source.features(centre, 800.0)
    assert LocalOSMSource.from_features([]).features(centre, 800.0) == []


def test_evidence_is_json_ready_and_complete(shared_data: Path) -> None:
    path = shared_data / "osm" / "west-oakland.osm.bz2"
    feature = open_osm_source(path).features(read_raw(path).centre, 1000.0)[0]
    evidence = json.loads(json.dumps(feature.evidence()))
    assert set(evidence) == {"osm_type", "osm_id", "name", "tags", "lat", "lon", "distance_m"}
    assert evidence["osm_id"] == feature.osm_id and evidence["tags"] == feature.tags
    assert evidence["distance_m"] == pytest.approx(feature.distance_m, abs=0.05)


def test_normalizer_keeps_only_elements_worth_mentioning() -> None:
    cafe = feature_from_element(
        "node", 1, {"amenity": "cafe", "building": "yes", "addr:street": "Via Roma"}, 43.0, 11.0
    )
    assert cafe is not None and cafe.category == ("amenity", "cafe") and cafe.tags == {"amenity": "cafe"}
    assert feature_from_element("way", 2, {"building": "yes"}, 43.0, 11.0) is None
    church = feature_from_element("way", 3, {"building": "church"}, 43.0, 11.0)
    assert church is not None and church.category == ("building", "church")
    named = feature_from_element("way", 4, {"building": "yes", "name": "Casa Vasari"}, 43.0, 11.0)
    assert named is not None and named.name == "Casa Vasari" and named.category == ("building", "yes")
    assert feature_from_element("node", 5, {"highway": "crossing"}, 43.0, 11.0) is None
    assert feature_from_element("node", 6, {"amenity": "no"}, 43.0, 11.0) is None
    assert feature_from_element("node", 7, {"name": "Nothing else"}, 43.0, 11.0) is None
    assert feature_from_element("node", 8, {"amenity": "cafe"}, float("nan"), 11.0) is None
    road = feature_from_element("way", 9, {"highway": "residential", "name": "Via\u202e Roma\n"}, 43.0, 11.0)
    assert road is not None and road.name == "Via Roma" and road.category == ("highway", "residential")
    assert OSMFeature("node", 1, "", {}, 0.0, 0.0).category is None


@pytest.mark.parametrize("name", ["missing.osm", "missing.osm.pbf"])
def test_missing_file_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInputError, match=name):
        open_osm_source(tmp_path / name)


def test_unsupported_suffix_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "map.geojson"
    path.write_text("{}")
    with pytest.raises(BadInputError, match=r"map\.geojson.*suffix"):
        open_osm_source(path)


@pytest.mark.parametrize("name", ["broken.osm", "broken.osm.pbf", "broken.osm.bz2"])
def test_corrupt_file_is_an_osm_error_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"<osm><node id='1' lat='1' lon='2'>\x00 not osm at all")
    with pytest.raises(OSMError, match=name):
        open_osm_source(path)


@pytest.mark.parametrize("radius", [0, -5.0, float("nan"), float("inf"), "100", True])
def test_bad_radius_is_rejected(shared_data: Path, radius: object) -> None:
    source = open_osm_source(shared_data / "osm" / "kirchberg-no-pois.osm")
    with pytest.raises(BadInputError, match="radius_m"):
        source.features(GeoPoint(48.136, 10.07), radius)


def test_bad_keys_and_points_are_rejected(shared_data: Path) -> None:
    source = open_osm_source(shared_data / "osm" / "kirchberg-no-pois.osm")
    with pytest.raises(BadInputError, match="colour"):
        source.features(GeoPoint(48.136, 10.07), keys=["colour"])
    with pytest.raises(BadInputError, match="point 1"):
        source.features_many([GeoPoint(48.136, 10.07), (48.136, 10.07)])


def test_sources_and_features_survive_pickling(extract) -> None:
    _, source, raw = extract
    found = source.features(raw.centre, 1000.0)
    copy = pickle.loads(pickle.dumps(source))
    assert copy.name == source.name
    assert copy.features(raw.centre, 1000.0) == found == pickle.loads(pickle.dumps(found))


def _osmnx_features(path: Path) -> dict[tuple[str, int], tuple[str, dict, float, float]]:
    """An independent reading of an XML extract: osmnx's parser and geometries (features_from_xml), the
    distinguishing tags and the point gaea takes of each geometry (name, tags, lat, lon by element)."""
    import osmnx

    from gaea.osm._geometry import representative_lat_lon

    frame = osmnx.features_from_xml(path, tags={key: True for key in DISTINGUISHING_KEYS})
    columns = [key for key in DISTINGUISHING_KEYS if key in frame.columns]
    found = {}
    for (element, osm_id), geometry, values in zip(frame.index, frame.geometry,
                                                   frame[columns].astype(object).itertuples(index=False), strict=True):
        tags = {key: value for key, value in zip(columns, values, strict=True) if isinstance(value, str)}
        found[(element, int(osm_id))] = (tags.get("name", ""), tags, *(representative_lat_lon(geometry) or (0, 0)))
    return found


@pytest.mark.parametrize("name", ["west-oakland.osm.bz2", "kirchberg-no-pois.osm"])
def test_xml_extracts_read_as_osmnx_reads_them_and_as_their_pbf(shared_data: Path, tmp_path: Path, name: str) -> None:
    # pyosmium streams XML: the features must be those osmnx finds in the same file, and those of the very
    # same data converted to PBF.
    pbf = tmp_path / f"{name.split('.')[0]}.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(shared_data / "osm" / name)):
            writer.add(obj)
    from_xml = {(f.osm_type, f.osm_id): f for f in open_osm_source(shared_data / "osm" / name).all_features}
    assert list(from_xml.values()) == list(open_osm_source(pbf).all_features)
    from_osmnx = _osmnx_features(shared_data / "osm" / name)
    assert from_xml and from_xml.keys() <= from_osmnx.keys()  # osmnx also keeps elements without a category
    for key, feature in from_xml.items():
        name_, tags, lat, lon = from_osmnx[key]
        assert {k: v for k, v in tags.items() if k in feature.tags} == feature.tags and name_ == feature.name
        assert (feature.lat, feature.lon) == (lat, lon), key