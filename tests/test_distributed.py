"""Runs spread over several machines: `gaea eval` over replicas of one model server (several --base-url);
`gaea gallery build`, `gaea data build`, `gaea eval geo --images` and `gaea eval bench` on a Dask cluster (a
LocalCluster the tests start on 127.0.0.1, 2 worker processes): equal to the plain runs byte for byte, and a
worker killed mid-run loses no finished work."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from gaea.cli import main
from gaea.distributed import cluster
from gaea.exif import read_exif_gps
from gaea.retrieval import Embedder, build_gallery
from tests.servers import HOST, recording_openai_server
from tests.test_data_pipeline import AREZZO, points_inside
from tests.test_retrieval import GEOTAGGED

PHOTOS = ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "Kodak_CX7530.jpg")


def _bench_dataset(directory: Path, photos_dir: Path) -> Path:
    """A GAEA-Bench-style qa.jsonl of 16 true / false questions about the shared photos."""
    directory.mkdir(parents=True)
    records = [{"image": str(photos_dir / photo), "question": f"Is this photo ({photo}, {n}) taken in Italy?",
                "answer": "Yes",
                "question_type": "TF"} for photo in PHOTOS for n in range(4)]
    (directory / "qa.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return directory


def _chat_requests(requests: list) -> int:
    return sum(1 for request in requests if request.path.startswith("/v1/chat/completions"))


def test_eval_bench_over_two_replicas_uses_both_and_scores_every_item_once(tmp_path, photos_dir, capsys):
    dataset = _bench_dataset(tmp_path / "dataset", photos_dir)
    out = tmp_path / "run"
    with recording_openai_server("Yes") as (first, first_requests), \
            recording_openai_server("Yes") as (second, second_requests):
        code = main(["eval", "bench", "--dataset", str(dataset), "--base-url", first, "--base-url", second,
                     "--judge-free", "--out", str(out), "--concurrency", "4"])
    assert code == 0, capsys.readouterr().err
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    ids = [sample["id"] for sample in samples]
    assert len(ids) == len(set(ids)) == 16
    assert all(sample["score"] == 10.0 and sample["error"] is None for sample in samples)
    asked = _chat_requests(first_requests), _chat_requests(second_requests)
    assert sum(asked) == 16 and min(asked) >= 4, asked  # both replicas answered, no item was asked twice
    assert json.loads((out / "results.json").read_text())["model"] == "stub"


# -- a Dask cluster started by the tests, on 127.0.0.1 only ---------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    with cluster(workers=2) as client:
        yield client


def _cluster_processes(client) -> list[psutil.Process]:
    """This process (the client, and the scheduler of a local cluster), the nannies and the workers."""
    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    return [psutil.Process(), *psutil.Process().children(recursive=True), *workers]


def _assert_loopback_only(client) -> None:
    sockets = [(process.pid, connection) for process in _cluster_processes(client)
               for connection in process.net_connections(kind="inet")]
    assert sockets, "the cluster's processes hold no socket"
    elsewhere = [(pid, connection.laddr, connection.raddr) for pid, connection in sockets
                 if connection.laddr.ip != HOST or (connection.raddr and connection.raddr.ip != HOST)]
    assert not elsewhere, f"sockets not on {HOST}: {elsewhere}"


def _repeated_manifest(photos_dir: Path, path: Path, copies: int) -> Path:
    """A manifest of the geotagged shared photos, each listed `copies` times under its own id."""
    rows = [(name, *read_exif_gps(photos_dir / name)) for name in GEOTAGGED]
    path.write_text("id,path,lat,lon\n" + "".join(f"{name}#{n},{photos_dir / name},{lat},{lon}\n"
                                                  for n in range(copies) for name, lat, lon in rows))
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def gallery_photos(photos_dir, tmp_path_factory) -> Path:
    return _repeated_manifest(photos_dir, tmp_path_factory.mktemp("gallery-photos") / "photos.csv", copies=4)


@pytest.fixture(scope="module")
def plain_gallery(gallery_photos, tiny_encoder, tmp_path_factory) -> Path:
    """The gallery of 32 photos built in this process, in chunks of 2 photos, batches of 2."""
    out = tmp_path_factory.mktemp("plain") / "gallery"
    build_gallery(gallery_photos, out, Embedder(tiny_encoder, batch_size=2), chunk_size=2, show_progress=False)
    return out


def _gallery_files(root: Path) -> dict[str, bytes]:
    return {name: data for name, data in _files(root).items() if not name.startswith("chunks/")}


def test_gallery_build_on_the_cluster_equals_the_plain_build_byte_for_byte(dask_client, gallery_photos, plain_gallery,
                                                                           tiny_encoder, tmp_path, capsys):
    out = tmp_path / "cluster"
    # One chunk of 512 here, of 2 in the plain build: the same batches of 2, so the same embeddings.
    assert main(["gallery", "build", "--images", str(gallery_photos), "--out", str(out), "--encoder",
                 str(tiny_encoder), "--batch-size", "2", "--scheduler", dask_client.scheduler.address]) == 0
    assert "gallery of 32 photos" in capsys.readouterr().out
    assert _gallery_files(out) == _gallery_files(plain_gallery)
    _assert_loopback_only(dask_client)


def test_a_worker_killed_mid_build_loses_no_finished_chunk(dask_client, gallery_photos, plain_gallery, tiny_encoder,
                                                           tmp_path):
    out = tmp_path / "cluster"
    run = threading.Thread(target=build_gallery, args=(gallery_photos, out, Embedder(tiny_encoder, batch_size=2)),
                           kwargs={"chunk_size": 2, "show_progress": False, "client": dask_client})
    run.start()
    before = _committed_chunks(out / "chunks", at_least=2, deadline_s=120)
    assert not (out / "manifest.json").exists(), "the build ended before a worker could be killed"
    victim = next(iter(dask_client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)  # its nanny starts a new worker; the scheduler re-runs its chunks
    run.join(timeout=300)
    assert not run.is_alive()
    after = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (out / "chunks").iterdir()}
    assert all(after[name] == stamp for name, stamp in before.items()), "a finished chunk was written again"
    assert _files(out) == _files(plain_gallery)  # chunks included: named by position, the same in both
    assert victim not in dask_client.run(os.getpid).values()


def _committed_chunks(chunks: Path, *, at_least: int, deadline_s: float) -> dict[str, tuple[int, int]]:
    """The committed chunk files once there are `at_least` chunks (both files), with inode and mtime."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if chunks.is_dir() and len(list(chunks.glob("*.jsonl"))) >= at_least:
            return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in chunks.iterdir()
                    if path.suffix in (".npy", ".jsonl") and path.with_suffix(".jsonl").exists()}
        time.sleep(0.005)
    pytest.fail(f"no {at_least} chunks in {chunks} after {deadline_s:.0f} s")


# -- gaea data build on the cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def spread_manifest(shared_data, photos_dir, tmp_path_factory) -> Path:
    """60 photos under their own ids, alternately inside West Oakland (features around) and at the shared
    photos' own places (Italy, Kenya, ...): sorted by cell, the cluster's parts mix the chunks."""
    oakland = points_inside(shared_data / "osm" / "west-oakland.osm.bz2", 30, seed=5)
    abroad = [(name, *read_exif_gps(photos_dir / name)) for name in GEOTAGGED]
    rows = []
    for n, (lat, lon) in enumerate(oakland):
        rows.append(f"oak{n},{photos_dir / AREZZO[n % len(AREZZO)]},{lat},{lon}\n")
        name, far_lat, far_lon = abroad[n % len(abroad)]
        rows.append(f"far{n},{photos_dir / name},{far_lat},{far_lon}\n")
    path = tmp_path_factory.mktemp("spread") / "photos.csv"
    path.write_text("id,path,lat,lon\n" + "".join(rows))
    return path


def _data_build(manifest: Path, out: Path, shared_data: Path, *extra: str, osm: Path | None = None) -> list[str]:
    return ["data", "build", "--images", str(manifest), "--out", str(out), "--osm-file",
            str(osm or shared_data / "osm" / "west-oakland.osm.bz2"), "--chunk-size", "1", "--no-hf", "--quiet",
            *extra]


@pytest.fixture(scope="module")
def plain_dataset(spread_manifest, shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "dataset"
    assert main(_data_build(spread_manifest, out, shared_data)) == 0
    return out


def _dataset_files(root: Path) -> dict[str, bytes]:
    return {name: data for name, data in _files(root).items() if name not in ("summary.json", "run.json")}


def test_data_build_on_the_cluster_equals_the_plain_build_byte_for_byte(dask_client, spread_manifest, shared_data,
                                                                        plain_dataset, tmp_path, capsys):
    out = tmp_path / "cluster"
    assert main(_data_build(spread_manifest, out, shared_data, "--scheduler", dask_client.scheduler.address)) == 0
    capsys.readouterr()
    assert _dataset_files(out) == _dataset_files(plain_dataset)  # records, skips, progress, images, card
    _assert_loopback_only(dask_client)


def test_data_build_on_the_cluster_through_a_store_equals_the_plain_build_byte_for_byte(
        dask_client, spread_manifest, shared_data, plain_dataset, tmp_path, capsys):
    store = tmp_path / "west-oakland-store"
    assert main(["osm", "index", str(shared_data / "osm" / "west-oakland.osm.bz2"), "--out", str(store)]) == 0
    out = tmp_path / "cluster"
    assert main(_data_build(spread_manifest, out, shared_data, "--scheduler", dask_client.scheduler.address,
                            osm=store)) == 0
    capsys.readouterr()
    # The card names the OSM source as given (the store folder, not the extract); every other file is equal.
    store_files, plain_files = _dataset_files(out), _dataset_files(plain_dataset)
    assert str(store).encode() in store_files.pop("README.md") and plain_files.pop("README.md")
    assert store_files == plain_files and store_files["qa.jsonl"].count(b"\n") > 30
    _assert_loopback_only(dask_client)


def test_a_worker_killed_mid_data_build_loses_no_committed_chunk(dask_client, spread_manifest, shared_data,
                                                                 plain_dataset, tmp_path, capsys):
    out = tmp_path / "cluster"
    run = threading.Thread(target=main, args=(_data_build(spread_manifest, out, shared_data, "--scheduler",
                                                          dask_client.scheduler.address),))
    run.start()
    deadline = time.monotonic() + 120
    while not (out / "progress.jsonl").is_file() or not (out / "progress.jsonl").read_bytes():
        assert time.monotonic() < deadline and run.is_alive(), "the build committed nothing"
        time.sleep(0.005)
    committed = (out / "qa.jsonl").read_bytes()
    assert not (out / "summary.json").exists(), "the build ended before a worker could be killed"
    os.kill(next(iter(dask_client.run(os.getpid).values())), signal.SIGKILL)
    run.join(timeout=300)
    assert not run.is_alive()
    capsys.readouterr()
    assert (out / "qa.jsonl").read_bytes().startswith(committed)
    assert _dataset_files(out) == _dataset_files(plain_dataset)


# -- gaea eval on the cluster ---------------------------------------------------------------------------


def _results_apart_from_the_run(out: Path) -> dict:
    """results.json without what differs between two runs of the same evaluation: when, where, on what."""
    results = json.loads((out / "results.json").read_text())
    results.pop("created")
    results["config"] = {key: value for key, value in results["config"].items()
                         if key not in ("out", "scheduler", "workers")}
    return results


def _eval_geo(truth: Path, photos_dir: Path, tiny_vlm: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "geo", "--truth", str(truth), "--images", str(photos_dir), "--model", str(tiny_vlm),
            "--max-new-tokens", "6", "--out", str(out), *extra]


def test_eval_geo_of_a_model_on_the_cluster_equals_the_plain_run(dask_client, photos_dir, tiny_vlm, tmp_path,
                                                                 capsys):
    truth = tmp_path / "truth.csv"  # 4 of the shared photos, and one id without a photo
    truth.write_text("id,lat,lon\n" + "".join(f"{name},{lat},{lon}\n" for name, lat, lon in
                                              [(name, *read_exif_gps(photos_dir / name)) for name in GEOTAGGED[:4]]
                                              + [("absent.jpg", 10.0, 10.0)]))
    address = dask_client.scheduler.address
    assert main(_eval_geo(truth, photos_dir, tiny_vlm, tmp_path / "plain")) == 0
    assert main(_eval_geo(truth, photos_dir, tiny_vlm, tmp_path / "cluster", "--scheduler", address)) == 0
    capsys.readouterr()
    for name in ("predictions.jsonl", "samples.jsonl"):  # every row, in the same order
        assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert len((tmp_path / "plain" / "predictions.jsonl").read_text().splitlines()) == 5
    assert _results_apart_from_the_run(tmp_path / "cluster") == _results_apart_from_the_run(tmp_path / "plain")
    _assert_loopback_only(dask_client)
    # Each worker built the model once and keeps it: another run with the same options loads nothing.
    kept = dask_client.run(lambda: id(__import__("eval.cluster").cluster._cached))
    assert main(_eval_geo(truth, photos_dir, tiny_vlm, tmp_path / "again", "--scheduler", address)) == 0
    assert dask_client.run(lambda: id(__import__("eval.cluster").cluster._cached)) == kept


def test_eval_bench_of_a_model_on_the_cluster_equals_the_plain_run(dask_client, photos_dir, tiny_vlm, tmp_path,
                                                                   capsys):
    dataset = _bench_dataset(tmp_path / "dataset", photos_dir)
    argv = ["eval", "bench", "--dataset", str(dataset), "--model", str(tiny_vlm), "--max-new-tokens", "4",
            "--judge-free", "--limit", "8"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--out", str(tmp_path / "cluster"), "--scheduler", dask_client.scheduler.address]) == 0
    capsys.readouterr()
    plain = (tmp_path / "plain" / "samples.jsonl").read_bytes()
    assert (tmp_path / "cluster" / "samples.jsonl").read_bytes() == plain and len(plain.splitlines()) == 8
    assert _results_apart_from_the_run(tmp_path / "cluster") == _results_apart_from_the_run(tmp_path / "plain")


def _asked_item(body: dict) -> str:
    """The "(photo, n)" of the bench question a chat request asks."""
    return re.search(r"\(([\w.]+, \d)\)", json.dumps(body)).group(1)


def test_a_worker_killed_mid_eval_loses_no_finished_item(dask_client, photos_dir, tmp_path, capsys):
    """eval bench over two model replicas on the cluster: a worker killed mid-run; the items finished before are
    never asked again, every item is scored once, both replicas answered, and a second run into the same
    directory is refused while the first one works."""
    dataset = _bench_dataset(tmp_path / "dataset", photos_dir)
    out = tmp_path / "run"

    def slow_yes(body: dict) -> str:
        time.sleep(0.15)
        return "Yes"

    with recording_openai_server(slow_yes) as (first, first_requests), \
            recording_openai_server(slow_yes) as (second, second_requests):
        argv = ["eval", "bench", "--dataset", str(dataset), "--base-url", first, "--base-url", second,
                "--judge-free", "--out", str(out), "--concurrency", "2", "--scheduler", dask_client.scheduler.address]
        codes = []
        run = threading.Thread(target=lambda: codes.append(main(argv)))
        run.start()
        samples_path = out / "samples.jsonl"
        deadline = time.monotonic() + 120
        while not samples_path.is_file() or not samples_path.read_bytes():
            assert time.monotonic() < deadline and run.is_alive(), "the run committed nothing"
            time.sleep(0.005)
        committed = samples_path.read_bytes()
        assert not (out / "results.json").exists(), "the run ended before a worker could be killed"
        asked_before = len(first_requests) + len(second_requests)
        os.kill(next(iter(dask_client.run(os.getpid).values())), signal.SIGKILL)
        assert main([*argv[:-2]]) == 2  # the run directory is held: a second run is refused
        assert "is in use by another run" in capsys.readouterr().err
        run.join(timeout=300)
        assert not run.is_alive() and codes == [0]
        chats = [request for request in first_requests + second_requests
                 if request.path.startswith("/v1/chat/completions")]
    assert (out / "samples.jsonl").read_bytes().startswith(committed)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len({sample["id"] for sample in samples}) == 16
    assert all(sample["score"] == 10.0 and sample["error"] is None for sample in samples)
    finished = {_asked_item({"q": sample["question"]}) for sample in samples[:len(committed.splitlines())]}
    asked = [_asked_item(request.body) for request in chats]
    assert all(asked.count(item) == 1 for item in finished), "a finished item was asked again"
    assert set(asked) == {_asked_item({"q": sample["question"]}) for sample in samples}
    assert _chat_requests(first_requests) and _chat_requests(second_requests), "a replica got no request"
    assert asked_before < len(first_requests) + len(second_requests)


def test_eval_refuses_cluster_options_that_cannot_apply(shared_data, photos_dir, tmp_path, capsys):
    truth = shared_data / "photos" / "expected_gps.csv"
    predictions = tmp_path / "preds.csv"
    predictions.write_text("id,lat,lon\nDSCN0010.jpg,43.46,11.88\n")
    assert main(["eval", "geo", "--truth", str(truth), "--predictions", str(predictions), "--out",
                 str(tmp_path / "geo"), "--workers", "2"]) == 2
    assert "--workers applies when a model locates --images" in capsys.readouterr().err
    dataset = _bench_dataset(tmp_path / "dataset", photos_dir)
    bench = ["eval", "bench", "--dataset", str(dataset), "--judge-free", "--out", str(tmp_path / "bench")]
    assert main([*bench, "--base-url", f"http://{HOST}:9/v1", "--api-key", "sk-secret", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--api-key KEY would travel to the Dask workers" in err and "env:NAME" in err and "sk-secret" not in err
    assert main([*bench, "--base-url", f"http://user:pw@{HOST}:9/v1", "--scheduler", f"tcp://{HOST}:9"]) == 2
    err = capsys.readouterr().err
    assert "credentials or query values would travel" in err and "pw" not in err
    assert main([*bench, "--model", "m", "--scheduler", f"tcp://{HOST}:9", "--workers", "2"]) == 2
    assert "--scheduler and --workers exclude each other" in capsys.readouterr().err
    assert main([*bench, "--model", "m", "--encoder", "e", "--workers", "2"]) == 2  # before a cluster starts
    assert "--encoder applies to the queries of a --gallery" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists() and not (tmp_path / "geo").exists()


def test_the_workers_recipe_holds_no_secret(monkeypatch):
    from eval.cluster import recipe_of
    from gaea.cli import build_parser

    monkeypatch.setenv("MY_MODEL_KEY", "sk-model")
    args = build_parser("eval").parse_args(
        ["eval", "bench", "--dataset", "d", "--out", "o", "--base-url", f"http://{HOST}:8000/v1", "--api-key",
         "env:MY_MODEL_KEY", "--judge-base-url", "https://api.openai.com/v1", "--judge-model", "gpt-4o",
         "--judge-api-key", "sk-judge", "--workers", "2"])
    recipe = recipe_of(args, "bench")
    shipped = pickle.dumps(recipe)
    assert b"sk-judge" not in shipped and b"sk-model" not in shipped and b"judge" not in shipped
    assert recipe.options["api_key"] == "env:MY_MODEL_KEY"  # a name: the worker reads its own environment
    assert recipe.options["base_url"] == [f"http://{HOST}:8000/v1"]
