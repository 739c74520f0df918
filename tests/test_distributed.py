"""Runs spread over several machines: `gaea eval` over replicas of one model server (several --base-url);
`gaea gallery build` on a Dask cluster (a LocalCluster the tests start on 127.0.0.1, 2 worker processes)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from gaea.cli import main
from gaea.distributed import cluster
from gaea.exif import read_exif_gps
from gaea.retrieval import Embedder, Gallery, build_gallery
from tests.servers import HOST, recording_openai_server
from tests.test_retrieval import GEOTAGGED

PHOTOS = ("DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "Kodak_CX7530.jpg")


def _bench_dataset(directory: Path, photos_dir: Path) -> Path:
    """A GAEA-Bench-style qa.jsonl of 16 true / false questions about the shared photos."""
    directory.mkdir(parents=True)
    records = [{"image": str(photos_dir / photo), "question": f"Is this photo {n} taken in Italy?", "answer": "Yes",
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


def test_gallery_build_on_the_cluster_equals_the_plain_build_byte_for_byte(dask_client, photos_dir, tiny_encoder,
                                                                           tmp_path, capsys):
    manifest = _repeated_manifest(photos_dir, tmp_path / "photos.csv", copies=2)
    plain = tmp_path / "plain"
    assert main(["gallery", "build", "--images", str(manifest), "--out", str(plain), "--encoder",
                 str(tiny_encoder), "--batch-size", "4"]) == 0
    on_cluster = tmp_path / "cluster"
    assert main(["gallery", "build", "--images", str(manifest), "--out", str(on_cluster), "--encoder",
                 str(tiny_encoder), "--batch-size", "4", "--scheduler", dask_client.scheduler.address]) == 0
    assert "gallery of 16 photos" in capsys.readouterr().out
    assert _files(on_cluster) == _files(plain)
    _assert_loopback_only(dask_client)


def test_a_worker_killed_mid_build_loses_no_finished_chunk(dask_client, photos_dir, tiny_encoder, tmp_path):
    manifest = _repeated_manifest(photos_dir, tmp_path / "photos.csv", copies=6)
    embedder = Embedder(tiny_encoder, batch_size=2)
    plain = build_gallery(manifest, tmp_path / "plain", embedder, chunk_size=2, show_progress=False)
    out = tmp_path / "cluster"
    run = threading.Thread(target=build_gallery, args=(manifest, out, embedder),
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
    gallery = Gallery.load(out)
    assert gallery.ids == plain.ids and len(gallery) == 48
    assert np.array_equal(np.asarray(gallery.embeddings), np.asarray(plain.embeddings))
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
