"""The run journal (gaea.runs), on real processes: one run per directory at a time, a lock left by a killed
run taken over, a resume with a changed fingerprint refused.

Concurrency is made deterministic with signals: the first run is started and, once it has committed some work,
stopped with SIGSTOP (it holds the directory, as a slow run would); the second run is started then, must
refuse naming the first one's PID, and the first run, continued with SIGCONT, must finish a clean result.
"""

from __future__ import annotations

import bz2
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_data_resume import many_photos  # noqa: F401  (a fixture)

from data_pipeline.build import BuildConfig, build_dataset
from data_pipeline.card import dataset_stats
from gaea.errors import BadInputError, ConfigError, RunInUseError
from gaea.exif import read_exif_gps
from gaea.io import read_jsonl
from gaea.retrieval import Embedder, build_gallery
from gaea.runs import LOCK_FILE, RunLock, holder_pid, open_run
from tests.servers import Reply, scripted_http_server

REPO_ROOT = Path(__file__).resolve().parents[1]
GAEA = [sys.executable, "-m", "gaea.cli"]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen, log: Path, *, timeout_s: float = 120.0,
                poll_s: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the run ended ({process.returncode}) too early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the run made no progress in time:\n{log.read_text()[-3000:]}"
        time.sleep(poll_s)


@contextlib.contextmanager
def _paused_run(command: list[str], log: Path, *, once: Callable[[], bool]) -> Iterator[subprocess.Popen]:
    """A run started and stopped (SIGSTOP) once `once()` holds; continued on leaving, killed if the test fails."""
    process = _start(command, log)
    try:
        _wait_until(once, process, log)
        os.kill(process.pid, signal.SIGSTOP)
        yield process
        os.kill(process.pid, signal.SIGCONT)
        assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _refusal(command: list[str], holder: int) -> str:
    """Run `command`, which must refuse in one line (exit 2) naming the holder's PID; return that line."""
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, (second.returncode, second.stderr[-3000:])
    errors = [line for line in second.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert f"is in use by another run (PID {holder})" in errors[0]
    return errors[0]


# ------------------------------------------------------------------------------------------------ the lock


_HOLDER = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from gaea.runs import LOCK_FILE, RunLock

    RunLock(sys.argv[1]).acquire()
    # Busy forked workers, like the data build's pool in the middle of a chunk when its parent is killed.
    pool = multiprocessing.get_context("fork").Pool(2)
    pool.map_async(time.sleep, [60, 60])
    # A child closes its inherited lock once it first runs (the fork hook); on a loaded machine that can come
    # after the parent is killed, so report only once neither child holds the lock file any more.
    lock = os.path.realpath(os.path.join(sys.argv[1], LOCK_FILE))
    def holds(pid):
        fds = f"/proc/{pid}/fd"
        return any(os.path.realpath(os.path.join(fds, fd)) == lock for fd in os.listdir(fds))
    while any(holds(worker.pid) for worker in pool._pool):
        time.sleep(0.01)
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_killed_holder_leaves_a_lock_the_next_run_takes_over(tmp_path: Path) -> None:
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert holder.stdout.readline() == b"locked\n"
        assert holder_pid(root) == holder.pid
        with pytest.raises(RunInUseError, match=rf"{root} is in use by another run \(PID {holder.pid}\)"):
            RunLock(root).acquire()
        os.kill(holder.pid, signal.SIGKILL)  # the parent only: its two workers live on, orphaned and busy
        holder.wait(timeout=30)
        orphans = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _process_group(int(pid)) == holder.pid]
        assert len(orphans) == 2, "the workers should outlive their parent (what the fork hook is for)"
        assert holder_pid(root) == holder.pid  # a killed run leaves its PID behind ...
        with RunLock(root):  # ... and its lock to the next run
            assert holder_pid(root) == os.getpid()
        assert (root / LOCK_FILE).read_text() == ""  # released cleanly, the file stays (a second inode = two locks)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_one_process_cannot_hold_a_directory_twice(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", job="test", fingerprint={}), pytest.raises(RunInUseError):
        RunLock(tmp_path / "run").acquire()


def test_a_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(BadInputError, match=r"taken: cannot be a run directory \(File exists\)"):
        RunLock(tmp_path / "taken").acquire()


def test_fingerprints_resume_refuse_and_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "run"
    with open_run(root, job="gaea gallery build", fingerprint={"encoder": "A", "dim": 8}):
        pass
    with open_run(root, job="gaea gallery build", fingerprint={"encoder": "B", "dim": 8}):
        (root / "work.txt").write_text("done")  # a run that stopped before any work pins no fingerprint
    with open_run(root, job="gaea gallery build", fingerprint={"encoder": "B", "dim": 8}):
        pass
    with pytest.raises(ConfigError) as refused:
        with open_run(root, job="gaea gallery build", fingerprint={"encoder": "C", "dim": 8}):
            pass
    assert str(refused.value) == (f'{root} was made with encoder "B"; this run asks for encoder "C": '
                                  "use another --out or --overwrite")
    with pytest.raises(ConfigError, match="holds a run of `gaea gallery build`, not of `gaea data build`"):
        with open_run(root, job="gaea data build", fingerprint={"encoder": "B", "dim": 8}):
            pass
    with open_run(root, job="gaea gallery build", fingerprint={"encoder": "C", "dim": 8}, overwrite=True):
        assert sorted(path.name for path in root.iterdir()) == ["run.json", "run.lock"]
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "mine.txt").write_text("not a run")
    for overwrite in (False, True):  # files we did not write are never deleted
        with pytest.raises(ConfigError, match="not a gaea run directory"):
            with open_run(stranger, job="gaea eval bench", fingerprint={}, overwrite=overwrite):
                pass
    assert (stranger / "mine.txt").read_text() == "not a run"


# ------------------------------------------------------------------------------------------- data build


@pytest.fixture(scope="module")
def oakland(shared_data: Path) -> Path:
    return shared_data / "osm" / "west-oakland.osm.bz2"


@pytest.fixture(scope="module")
def clean_build(many_photos: Path, oakland: Path, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("clean") / "out"
    build_dataset(BuildConfig(photos=str(many_photos), out=out, osm_file=str(oakland), chunk_size=16,
                              hf_dataset=False, progress=False))
    return out


def _data_build(photos: Path, out: Path, extract: Path, *, workers: int = 1) -> list[str]:
    return [*GAEA, "data", "build", "--images", str(photos), "--out", str(out), "--osm-file", str(extract),
            "--chunk-size", "2", "--workers", str(workers), "--no-hf", "--quiet"]


def _same_dataset(built: Path, clean: Path) -> None:
    for name in ("qa.jsonl", "skipped.jsonl"):
        assert (built / name).read_bytes() == (clean / name).read_bytes(), name
    ids = [record["id"] for record in read_jsonl(built / "qa.jsonl")]
    assert len(ids) == len(set(ids))


def test_a_second_data_build_into_one_folder_refuses(many_photos: Path, oakland: Path, clean_build: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = _data_build(many_photos, out, oakland)
    with _paused_run(command, tmp_path / "first.log", once=lambda: _lines(out / "progress.jsonl") >= 3) as first:
        line = _refusal(command, first.pid)
        assert line.startswith(f"gaea data build: error: {out} is in use")
    _same_dataset(out, clean_build)
    assert json.loads((out / "summary.json").read_text())["photos_read"] == len(list(many_photos.iterdir()))


def test_a_killed_data_build_with_workers_is_taken_over(many_photos: Path, oakland: Path,  # noqa: F811
                                                                 clean_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = tmp_path / "killed.log"
    first = _start(_data_build(many_photos, out, oakland, workers=2), log)
    try:
        _wait_until(lambda: _lines(out / "progress.jsonl") >= 5, first, log)
        os.kill(first.pid, signal.SIGKILL)  # its pool workers are not killed
        first.wait(timeout=30)
        assert holder_pid(out) == first.pid
        resumed = subprocess.run(_data_build(many_photos, out, oakland, workers=2), cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"the run of PID {first.pid} ended without finishing" in resumed.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):  # workers that outlived their parent
            os.killpg(first.pid, signal.SIGKILL)
    _same_dataset(out, clean_build)


def test_a_dataset_two_unlocked_builds_wrote_is_refused_and_counted_once(clean_build: Path, tmp_path: Path) -> None:
    # What two builds into one folder left before builds held a lock: both runs' lines, one after the other.
    out = tmp_path / "doubled"
    shutil.copytree(clean_build, out)
    for name in ("qa.jsonl", "progress.jsonl", "skipped.jsonl"):
        (out / name).write_bytes((clean_build / name).read_bytes() * 2)
    clean = dataset_stats(clean_build)
    doubled = dataset_stats(out)
    assert doubled["records"] == clean["records"] and doubled["by_type"] == clean["by_type"]
    assert doubled["duplicates"] == clean["records"] and clean["duplicates"] == 0
    config = json.loads((out / "run.json").read_text())["fingerprint"]
    with pytest.raises(BadInputError, match=r"progress\.jsonl, line \d+: the photo count goes back .* --overwrite"):
        build_dataset(BuildConfig(photos=config["photos"], out=out, osm_file=config["osm"]["path"], chunk_size=16,
                                  hf_dataset=False, progress=False))


def test_a_data_build_with_other_settings_is_refused_or_overwritten(many_photos: Path, oakland: Path,  # noqa: F811
                                                                    clean_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(clean_build, out)
    command = _data_build(many_photos, out, oakland)
    refused = subprocess.run([*command, "--seed", "5"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert f"{out} was made with seed 0; this run asks for seed 5: use another --out or --overwrite" in refused.stderr
    assert (out / "qa.jsonl").read_bytes() == (clean_build / "qa.jsonl").read_bytes()
    rebuilt = subprocess.run([*command, "--seed", "5", "--overwrite"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["fingerprint"]["seed"] == 5
    assert (out / "qa.jsonl").read_bytes() != (clean_build / "qa.jsonl").read_bytes()


def test_a_data_build_resumed_on_a_replaced_extract_is_refused(shared_data: Path, tmp_path: Path) -> None:
    # The fingerprint keys the extract by its content: a resume after the file at that path was replaced by
    # another extract would mix two versions of the map in one dataset. A copy (new mtime, same bytes) is fine.
    extract, out = tmp_path / "city.osm.bz2", tmp_path / "out"
    shutil.copyfile(shared_data / "osm" / "west-oakland.osm.bz2", extract)
    photos = shared_data / "photos"
    first = subprocess.run(_data_build(photos, out, extract), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode in (0, 2), first.stderr[-2000:]
    assert (out / "run.json").exists(), first.stderr[-2000:]
    shutil.copyfile(shared_data / "osm" / "west-oakland.osm.bz2", extract)  # same bytes, a new mtime
    again = subprocess.run(_data_build(photos, out, extract), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=300)
    assert "was made with" not in again.stderr, again.stderr[-2000:]
    extract.write_bytes(bz2.compress((shared_data / "osm" / "kirchberg-no-pois.osm").read_bytes()))
    refused = subprocess.run(_data_build(photos, out, extract), cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2
    assert f"{out} was made with osm" in refused.stderr and "use another --out or --overwrite" in refused.stderr


# ------------------------------------------------------------------------------------------------ gallery


def _manifest_csv(path: Path, photos_dir: Path, names: list[str], *, copies: int = 1) -> Path:
    rows = [(f"{name}#{copy}", photos_dir / name, *read_exif_gps(photos_dir / name))
            for copy in range(copies) for name in names]
    path.write_text("id,path,lat,lon\n" + "".join(f"{i},{p},{la},{lo}\n" for i, p, la, lo in rows))
    return path


GEOTAGGED = ["DSCN0010.jpg", "DSCN0012.jpg", "DSCN0021.jpg", "DSCN0025.jpg", "DSCN0027.jpg", "DSCN0029.jpg",
             "Kodak_CX7530.jpg"]


def _gallery_build(images: Path, out: Path, encoder: Path, *extra: str) -> list[str]:
    return [*GAEA, "gallery", "build", "--images", str(images), "--out", str(out), "--encoder", str(encoder),
            "--device", "cpu", *extra]


def test_resuming_a_gallery_with_another_encoder_is_refused(photos_dir: Path, tiny_encoder: Path,
                                                           tmp_path: Path) -> None:
    other_encoder = tmp_path / "other-encoder"
    shutil.copytree(tiny_encoder, other_encoder)
    first = _manifest_csv(tmp_path / "first.csv", photos_dir, GEOTAGGED[:4])
    everything = _manifest_csv(tmp_path / "all.csv", photos_dir, GEOTAGGED)
    out = tmp_path / "gallery"
    encoder = Embedder(tiny_encoder, device="cpu")
    build_gallery(first, out, encoder, chunk_size=2, show_progress=False)
    manifest = (out / "manifest.json").read_bytes()

    # Before: the new encoder embedded the rest, beside the old embeddings, and signed the manifest.
    resumed = subprocess.run(_gallery_build(everything, out, other_encoder), cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert (f'{out} was made with encoder "{tiny_encoder.resolve()}"; this run asks for encoder '
            f'"{other_encoder.resolve()}": use another --out or --overwrite') in resumed.stderr
    assert (out / "manifest.json").read_bytes() == manifest  # the gallery is left as it was

    assert len(build_gallery(everything, out, encoder, show_progress=False)) == len(GEOTAGGED)  # adding photos is fine
    other = Embedder(other_encoder, device="cpu")
    gallery = build_gallery(first, out, other, show_progress=False, overwrite=True)
    assert gallery.encoder == str(other_encoder) and len(gallery) == 4
    chunks = sorted(path.name for path in (out / "chunks").iterdir())
    assert chunks == ["0000000000-00000.jsonl", "0000000000-00000.npy"]


def test_a_second_gallery_build_into_one_folder_refuses(photos_dir: Path, tiny_encoder: Path, tmp_path: Path) -> None:
    images = _manifest_csv(tmp_path / "many.csv", photos_dir, GEOTAGGED, copies=4)
    out = tmp_path / "gallery"
    command = _gallery_build(images, out, tiny_encoder)
    with _paused_run(command, tmp_path / "first.log", once=lambda: (out / "chunks").is_dir()) as first:
        line = _refusal(command, first.pid)
        assert line.startswith(f"gaea gallery build: error: {out} is in use")
        assert not (out / "manifest.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 4 * len(GEOTAGGED)
    assert len(list(read_jsonl(out / "metadata.jsonl"))) == manifest["count"]


# --------------------------------------------------------------------------------------------------- eval


def _streamed_answer(content: str, *, delay_s: float) -> Reply:
    event = json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]})
    return Reply(200, f"data: {event}\n\ndata: [DONE]\n\n", {"Content-Type": "text/event-stream"}, delay_s=delay_s)


def test_a_second_eval_into_one_folder_refuses(photos_dir: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "bench.jsonl"
    records = [{"id": f"q{i}", "image": str(photos_dir / GEOTAGGED[i % 7]), "question_type": "TF",
                "question": f"Statement {i} about the photo.", "answer": "True"} for i in range(12)]
    dataset.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "run"
    with scripted_http_server([_streamed_answer("True", delay_s=0.1)]) as server:
        command = [*GAEA, "eval", "bench", "--dataset", str(dataset), "--base-url", server.base_url,
                   "--served-model", "scripted", "--judge-free", "--concurrency", "1", "--out", str(out)]
        with _paused_run(command, tmp_path / "first.log", once=lambda: _lines(out / "samples.jsonl") >= 2) as first:
            line = _refusal(command, first.pid)
            assert line.startswith(f"gaea eval bench: error: {out} is in use")
    ids = [sample["id"] for sample in read_jsonl(out / "samples.jsonl")]
    assert sorted(ids) == sorted(record["id"] for record in records)  # every item once: nobody wrote twice
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["TF"]["items"] == 12 and results["scores"]["TF"] == 100.0
