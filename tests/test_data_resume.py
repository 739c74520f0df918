"""A build killed mid-way and run again equals a build that was never interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_data_pipeline import AREZZO, points_inside, write_gps_copy

from data_pipeline.build import BuildConfig, build_dataset
from gaea.io import read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIES_PER_POSITION = 6


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory, shared_data: Path) -> Path:
    """120 photos (20 positions inside West Oakland, each under 6 names) plus one without GPS."""
    folder = tmp_path_factory.mktemp("many") / "photos"
    positions = points_inside(shared_data / "osm" / "west-oakland.osm.bz2", 20, seed=11)
    for index, (lat, lon) in enumerate(positions):
        first = write_gps_copy(shared_data / "photos" / AREZZO[index % 6], folder / f"p{index:02d}_0.jpg", lat, lon)
        for copy in range(1, COPIES_PER_POSITION):
            os.link(first, folder / f"p{index:02d}_{copy}.jpg")
    (folder / "p15_x.jpg").write_bytes((shared_data / "photos" / "Canon_40D.jpg").read_bytes())
    return folder


def _committed_chunks(out: Path) -> int:
    path = out / "progress.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _start_cli_build(photos: Path, out: Path, extract: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gaea.cli", "data", "build", "--images", str(photos), "--out", str(out),
        "--osm-file", str(extract), "--chunk-size", "2", "--workers", "1", "--no-hf", "--quiet",
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after_chunks(process: subprocess.Popen, out: Path, chunks: int, *, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _committed_chunks(out) < chunks:
        assert process.poll() is None, f"the build ended early: {process.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the build committed no chunks in time"
        time.sleep(0.005)
    process.kill()
    process.wait(timeout=30)


def test_killed_build_resumes_to_the_same_dataset(many_photos: Path, tmp_path: Path, shared_data: Path) -> None:
    extract = shared_data / "osm" / "west-oakland.osm.bz2"
    total = len(list(many_photos.iterdir()))
    interrupted = tmp_path / "interrupted"

    process = _start_cli_build(many_photos, interrupted, extract)
    _kill_after_chunks(process, interrupted, 10)
    assert process.returncode == -9
    done = json.loads((interrupted / "progress.jsonl").read_text().splitlines()[-1])["items"]
    assert 0 < done < total, "the kill must land mid-way"

    # A crash between writing a chunk and committing it leaves records nobody committed, maybe torn.
    with open(interrupted / "qa.jsonl", "ab") as handle:
        handle.write(b'{"id": "uncommitted", "question": "?"}\n{"id": "torn", "quest')

    process = _start_cli_build(many_photos, interrupted, extract)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()

    clean = tmp_path / "clean"
    build_dataset(BuildConfig(photos=str(many_photos), out=clean, osm_file=str(extract), chunk_size=16,
                              hf_dataset=False, progress=False))
    assert (interrupted / "qa.jsonl").read_bytes() == (clean / "qa.jsonl").read_bytes()
    assert (interrupted / "skipped.jsonl").read_bytes() == (clean / "skipped.jsonl").read_bytes()
    records = list(read_jsonl(clean / "qa.jsonl"))
    assert len({r["image"] for r in records}) == total - 1
    assert len({r["id"] for r in records}) == len(records)
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["photos_read"] == total and summary["resumed_from"] == done
    assert summary["records"] == json.loads((clean / "summary.json").read_text())["records"]


def test_rerunning_a_finished_build_changes_nothing(many_photos: Path, tmp_path: Path, shared_data: Path) -> None:
    config = BuildConfig(photos=str(many_photos), out=tmp_path / "out", hf_dataset=False, progress=False,
                         osm_file=str(shared_data / "osm" / "west-oakland.osm.bz2"), chunk_size=50)
    build_dataset(config)
    before = (tmp_path / "out" / "qa.jsonl").read_bytes()
    summary = build_dataset(config)
    assert (tmp_path / "out" / "qa.jsonl").read_bytes() == before
    assert summary.resumed_from == summary.photos_read
