"""The on-disk feature store (gaea.osm.store) against the in-memory source, on every real extract in
../shared/data/osm and on a generated one (gaea.osm.synthetic: SYNTHETIC elements in a realistic layout).

The in-memory source is the reference here because tests/test_osm_local.py checks it against the files
themselves; the store must give exactly its features, distances and order, and datasets built through the
store must be byte for byte those built through memory.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree

from data_pipeline import build
from data_pipeline.build import BuildConfig, build_dataset
from data_pipeline.lookup import FeatureTable
from gaea.errors import BadInputError, OSMError
from gaea.geo import unit_vectors
from gaea.osm import FeatureStore, LocalOSMSource, OSMSource, build_store, open_osm_source
from gaea.osm._spatial import _MANY_PAIRS
from gaea.osm.store import default_store_dir
from gaea.osm.synthetic import photo_positions, plan_cities, write_extract
from gaea.types import GeoPoint

REPO = Path(__file__).resolve().parents[1]
SHARED_EXTRACTS = sorted(path.name for path in (REPO.parent / "shared" / "data" / "osm").glob("*.osm*"))
GENERATED_NODES = 100_000


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stores of the read-only shared extracts go to the cache folder: a temporary one here."""
    folder = tmp_path_factory.getbasetemp() / "gaea-cache"
    monkeypatch.setenv("GAEA_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_extract(tmp_path_factory.mktemp("generated") / "italy-synthetic.osm.pbf", GENERATED_NODES).path


def query_points(source: LocalOSMSource, count: int, *, seed: int = 0) -> list[GeoPoint]:
    """Points near features, anywhere in the extract's box and a little beyond it (edges, empty places)."""
    lats = np.array([f.lat for f in source.all_features])
    lons = np.array([f.lon for f in source.all_features])
    rng = np.random.default_rng(seed)
    near = rng.integers(len(lats), size=count // 2)
    margin = 0.01
    return ([GeoPoint(float(a), float(b)) for a, b in zip(lats[near] + rng.normal(0, 3e-3, len(near)),
                                                         lons[near] + rng.normal(0, 3e-3, len(near)), strict=True)]
            + [GeoPoint(float(a), float(b)) for a, b in zip(
                rng.uniform(lats.min() - margin, lats.max() + margin, count - len(near)),
                rng.uniform(lons.min() - margin, lons.max() + margin, count - len(near)), strict=True)])


def assert_same_as_memory(store: FeatureStore, memory: LocalOSMSource, points: list[GeoPoint], *,
                          radii: tuple[float, ...] = (25.0, 300.0, 1000.0)) -> None:
    for radius in radii:
        from_store, from_memory = store.features_many(points, radius), memory.features_many(points, radius)
        assert from_store == from_memory, f"radius {radius}"
        assert [[f.tags for f in found] for found in from_store] == [[f.tags for f in found] for found in from_memory]
    assert sum(map(len, from_store)) > len(points), "the points must find features"
    for keys in (["amenity"], ["highway", "name"]):
        assert store.features_many(points, 1000.0, keys=keys) == memory.features_many(points, 1000.0, keys=keys)
    assert store.features(points[0], 500.0) == memory.features(points[0], 500.0)


@pytest.mark.parametrize("name", SHARED_EXTRACTS)
def test_store_finds_what_memory_finds_on_every_shared_extract(name: str, shared_data: Path) -> None:
    path = shared_data / "osm" / name
    memory = LocalOSMSource.from_file(path)
    store = FeatureStore(build_store(path))
    assert isinstance(store, OSMSource)
    assert len(store) == len(memory) and store.name == memory.name == f"osm-file:{name}"
    assert store.bounds == memory.bounds  # the header's box where there is one: points outside are refused alike
    assert_same_as_memory(store, memory, query_points(memory, 120, seed=len(name)), radii=(25.0, 300.0, 20_000.0))


def test_store_finds_what_memory_finds_on_a_generated_extract(generated: Path, tmp_path: Path) -> None:
    # A 2 MB budget: node locations on disk, several write batches, many blocks and cells.
    folder = build_store(generated, tmp_path / "store", memory_mb=2)
    store, memory = FeatureStore(folder), LocalOSMSource.from_file(generated)
    assert store.manifest["build"]["node_locations"] == "sparse_file_array"
    assert store.manifest["blocks"] > 5 and store.manifest["cells"] > 5
    assert len(store) == len(memory) > 10_000
    lats, lons = photo_positions(plan_cities(GENERATED_NODES), 200, seed=4)
    points = [GeoPoint(float(a), float(b)) for a, b in zip(lats, lons, strict=True)]
    assert_same_as_memory(store, memory, points + query_points(memory, 60))
    small = FeatureStore(folder, memory_mb=1)  # room for a few blocks: each query's blocks replace the last ones
    for point in points[:40]:
        assert small.features(point, 1000.0) == memory.features(point, 1000.0)
        # Beyond the blocks a query is using (their rows decoded after they were read), the budget holds.
        in_use = {id(block) for block in small.window([point.lat], [point.lon], 1000.0).blocks}
        assert sum(block.nbytes for block in small._cache.values() if id(block) not in in_use) <= 2**20


def test_an_xml_extract_gets_its_store_in_bounded_memory_too(shared_data: Path, tmp_path: Path) -> None:
    # Kotka as bzip2 XML: the store's streaming pass reads it with node locations on disk (a 1 MB budget),
    # and finds what the PBF of the same data finds in memory.
    import osmium

    pbf = shared_data / "osm" / "kotka.osm.pbf"
    xml = tmp_path / "kotka.osm.bz2"
    with osmium.SimpleWriter(str(xml)) as writer:
        for obj in osmium.FileProcessor(str(pbf)):
            writer.add(obj)
    store, memory = FeatureStore(build_store(xml, tmp_path / "store", memory_mb=1)), LocalOSMSource.from_file(pbf)
    assert store.manifest["build"]["node_locations"] == "sparse_file_array" and len(store) == len(memory)
    assert_same_as_memory(store, memory, query_points(memory, 60, seed=3))


def test_shared_data_stays_untouched_and_large_extracts_open_through_their_store(
        shared_data: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared_data / "osm" / "kotka.osm.pbf"
    assert default_store_dir(path).parent == cache_dir / "osm-stores"
    assert isinstance(open_osm_source(path), LocalOSMSource)
    monkeypatch.setenv("GAEA_OSM_STORE_MIN_MB", "0.1")  # kotka is 0.13 MB
    source = open_osm_source(path)
    assert isinstance(source, FeatureStore) and source.path == default_store_dir(path)
    assert isinstance(open_osm_source(source.path), FeatureStore)
    assert sorted(p.name for p in (shared_data / "osm").iterdir()) == SHARED_EXTRACTS


def test_store_is_reused_while_the_extract_is_unchanged_and_rebuilt_when_it_changes(tmp_path: Path, caplog) -> None:
    extract = write_extract(tmp_path / "town.osm.pbf", 12_000, seed=1).path
    folder = build_store(extract)
    assert folder == tmp_path / "town.osm.pbf.gaea-store"
    manifest, cells = (folder / "store.json").read_bytes(), sorted(folder.glob("cells/*"))
    stamps = [path.stat().st_mtime_ns for path in cells]
    assert build_store(extract) == folder
    assert (folder / "store.json").read_bytes() == manifest
    assert [path.stat().st_mtime_ns for path in cells] == stamps
    write_extract(extract, 15_000, seed=2)
    with caplog.at_level("WARNING"):
        open_osm_source(folder)  # the folder itself, as --osm-file: served, with a warning that it is stale
    assert "is older than" in caplog.text and "gaea osm index" in caplog.text
    assert build_store(extract) == folder
    assert (folder / "store.json").read_bytes() != manifest
    memory = LocalOSMSource.from_file(extract)
    assert_same_as_memory(FeatureStore(folder), memory, query_points(memory, 60))
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".stale-" in p.name] == []


_SLOW_BUILD = """
import sys, time
import gaea.osm.store as store
read = store.read_features
def slow(*args, **kwargs):  # the real features, slowly: the parent kills this build half-way
    for feature in read(*args, **kwargs):
        time.sleep(0.0004)
        yield feature
store.read_features = slow
store.build_store(sys.argv[1], sys.argv[2], memory_mb=2)
"""


def test_a_killed_build_restarts_cleanly_and_gives_the_same_store(generated: Path, tmp_path: Path) -> None:
    target = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(generated), str(target)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    written = None
    while time.monotonic() < deadline and child.poll() is None:
        written = next(tmp_path.glob(".store.partial-*/scratch/features.parquet"), None)
        if written is not None and written.stat().st_size > 4:  # the first batch is on disk
            break
        time.sleep(0.05)
    assert child.poll() is None, "the build must still be running when it is killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert written is not None and not (target / "store.json").exists()
    assert list(tmp_path.glob(".store.partial-*")), "the killed build left its temporary folder"

    build_store(generated, target, memory_mb=2)
    fresh = build_store(generated, tmp_path / "fresh", memory_mb=2)
    assert not list(tmp_path.glob(".store.partial-*"))
    assert same_store(target, fresh)
    memory = LocalOSMSource.from_file(generated)
    assert FeatureStore(target).features_many(query_points(memory, 40), 500.0) == \
        memory.features_many(query_points(memory, 40), 500.0)


def same_store(one: Path, other: Path) -> bool:
    manifests = [json.loads((folder / "store.json").read_text()) for folder in (one, other)]
    for manifest in manifests:
        del manifest["build"]
    files = [sorted(p.relative_to(folder) for p in folder.rglob("*.parquet")) for folder in (one, other)]
    return (manifests[0] == manifests[1] and files[0] == files[1]
            and all(pq.read_table(one / name).equals(pq.read_table(other / name)) for name in files[0]))


def test_a_second_builder_waits_or_is_refused(generated: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "store"
    with open(tmp_path / ".store.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a builder in another process holds it
        with pytest.raises(OSMError, match="another process is building"):
            build_store(generated, target, wait=False)
        assert gaea_cli(["osm", "index", str(generated), "--out", str(target)]) == 2
    error = capsys.readouterr().err
    assert "another process is building" in error and len(error.strip().splitlines()) == 1
    assert not target.exists()


def test_osm_index_command_builds_reuses_and_serves_the_store(shared_data: Path, tmp_path: Path, capsys) -> None:
    extract, target = shared_data / "osm" / "kotka.osm.pbf", tmp_path / "kotka-store"
    assert gaea_cli(["osm", "index", str(extract), "--out", str(target)]) == 0
    built = capsys.readouterr()
    assert f"{target}: 501 features of kotka.osm.pbf in 1 cells, 1 blocks" in built.out and "built in" in built.out
    assert "reading kotka.osm.pbf" in built.err and "writing cells" in built.err  # the progress bars
    assert gaea_cli(["osm", "index", str(extract), "--out", str(target)]) == 0
    assert "up to date, reused" in capsys.readouterr().out
    printed = []
    for source in (target, extract):
        assert gaea_cli(["osm", "near", "60.53", "26.95", "--osm-file", str(source), "--json", "--limit", "0"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and printed[0].count("\n") > 10


def gaea_cli(argv: list[str]) -> int:
    from gaea.cli import main

    return main(argv)


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/italy.osm.pbf"], "does not exist"),
    ([str(REPO / "README.md")], "unsupported suffix"),
    ([str(REPO.parent / "shared/data/osm/kotka.osm.pbf"), "--memory-mb", "8"], "--memory-mb must be at least 16"),
    ([str(REPO.parent / "shared/data/osm/kotka.osm.pbf"), "--out", str(REPO / "tests")], "is not a feature store"),
])
def test_osm_index_bad_input_is_one_line(args: list[str], message: str, shared_data: Path, capsys) -> None:
    assert gaea_cli(["osm", "index", *args]) == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("gaea osm index: error:") and error.count("\n") == 1


def test_osm_index_runs_as_a_command(shared_data: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gaea.cli", "osm", "index", "/nonexistent.osm.pbf"],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "does not exist" in result.stderr


def test_store_folder_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is not a feature store"):
        open_osm_source(tmp_path)


def test_dataset_built_through_the_store_is_byte_for_byte_the_in_memory_one(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """`data build` of an extract over GAEA_OSM_STORE_MIN_MB builds its store beside it on first use, and
    reuses it after (here in forked workers, each reading the store with its own file handles)."""
    extract = shared_data / "osm" / "kotka.osm.pbf"
    large = tmp_path / "osm" / extract.name  # a writable copy: its store goes beside it
    large.parent.mkdir()
    shutil.copyfile(extract, large)
    memory = LocalOSMSource.from_file(extract)
    points = query_points(memory, 40, seed=7)
    manifest = tmp_path / "photos.csv"
    (tmp_path / "images").mkdir()
    images = [tmp_path / "images" / f"photo-{i}.jpg" for i in range(len(points))]  # a photo is listed once
    for image in images:
        shutil.copyfile(shared_data / "photos" / "Canon_40D.jpg", image)
    manifest.write_text("path,lat,lon\n" + "".join(f"{image},{p.lat},{p.lon}\n"
                                                    for image, p in zip(images, points, strict=True)))
    outputs = []
    for name, osm, workers in (("memory", extract, 1), ("store", large, 1), ("store-again", large, 2)):
        if name.startswith("store"):
            monkeypatch.setenv("GAEA_OSM_STORE_MIN_MB", "0.1")  # kotka is 0.13 MB
        config = BuildConfig(photos=str(manifest), out=tmp_path / name, osm_file=str(osm), chunk_size=7,
                             workers=workers, hf_dataset=False, progress=False)
        with caplog.at_level("WARNING"):
            build_dataset(config)
        outputs.append((tmp_path / name / "qa.jsonl").read_bytes())
        if name == "store":
            built = (tmp_path / "osm" / "kotka.osm.pbf.gaea-store" / "store.json").stat().st_mtime_ns
    assert outputs[0] == outputs[1] == outputs[2] and outputs[0].count(b"\n") > 100
    assert caplog.text.count("building the feature store of") == 1
    assert (tmp_path / "osm" / "kotka.osm.pbf.gaea-store" / "store.json").stat().st_mtime_ns == built


def test_a_worker_reopens_its_source_when_the_store_threshold_changes(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived worker keeps its OSM source between runs only while it would open it the same way: an
    extract read into memory under one GAEA_OSM_STORE_MIN_MB goes through its store under a smaller one."""
    extract = tmp_path / "kotka.osm.pbf"  # a writable copy (0.13 MB): its store goes beside it
    shutil.copyfile(shared_data / "osm" / extract.name, extract)
    config = BuildConfig(photos=str(shared_data / "photos"), out=tmp_path / "out", osm_file=str(extract),
                         hf_dataset=False, progress=False)
    monkeypatch.setenv("GAEA_OSM_STORE_MIN_MB", "1000")
    assert isinstance(build._worker_state(config).source, LocalOSMSource)
    monkeypatch.setenv("GAEA_OSM_STORE_MIN_MB", "0.1")
    assert isinstance(build._worker_state(config).source, FeatureStore)
    monkeypatch.setenv("GAEA_OSM_STORE_MIN_MB", "1000")
    assert isinstance(build._worker_state(config).source, LocalOSMSource)


def test_lookup_pairs_are_the_tree_against_tree_pairs_bit_for_bit(generated: Path) -> None:
    """The per-photo lookup keeps the datasets of the tree-against-tree one it replaced: same pairs, same
    chord lengths to the last bit, on photos spread over the whole country, where photos find few features
    (lone photos in one ball query) and many (each lone photo its own tree-against-tree call)."""
    table = FeatureTable(LocalOSMSource.from_file(generated).all_features)
    lats, lons = photo_positions(plan_cities(GENERATED_NODES), 300, seed=9)
    tree = cKDTree(unit_vectors(table.lat, table.lon))
    table.nearby(lats[:1], lons[:1], 1000.0)
    index = table._index
    for radius in (1000.0, 1000.0, 8000.0, 8000.0):  # the second call of each sees the density of the first
        chord = 2 * np.sin(radius / 6_371_008.8 / 2) * (1 + 1e-9) + 1e-12
        expected = cKDTree(unit_vectors(lats, lons)).sparse_distance_matrix(tree, chord, output_type="ndarray")
        pairs = index.pairs(lats, lons, radius)
        tree_pairs = sorted(zip(expected["i"].tolist(), expected["j"].tolist(), expected["v"].tolist(), strict=True))
        assert tree_pairs == sorted(zip(pairs.points.tolist(), pairs.rows.tolist(), pairs.chords.tolist(),
                                        strict=True))
        assert np.all(np.diff(pairs.points) >= 0) and len(pairs.points) > 1000
    assert index._pairs_per_point > _MANY_PAIRS, "the dense way was taken"


def test_an_extract_reached_through_a_symlink_has_the_same_cached_store(cache_dir: Path, tmp_path: Path) -> None:
    # CI may see ../shared through a symlink: the store cached for a read-only folder is keyed by the real file.
    real = tmp_path / "real"
    real.mkdir()
    (real / "x.osm.pbf").write_bytes(b"")
    real.chmod(0o555)
    (tmp_path / "link").symlink_to(real)
    try:
        assert default_store_dir(tmp_path / "link" / "x.osm.pbf") == default_store_dir(real / "x.osm.pbf")
        assert default_store_dir(real / "x.osm.pbf").parent == cache_dir / "osm-stores"
    finally:
        real.chmod(0o755)
