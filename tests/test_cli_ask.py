"""`gaea ask` run as a real subprocess: an answer for every shared photo with the tiny model, the same
through a real `transformers serve`, and one clear stderr line with exit code 2 for every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.servers import free_port, transformers_serve

QUESTION = "Where was this photo taken?"
TOKENS = ("--max-new-tokens", "16")
Result = subprocess.CompletedProcess


def run_gaea(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gaea.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2 and exactly one stderr line, `gaea ask: error: ...`, naming what is expected."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("gaea ask: error: ")
    for text in expected:
        assert text in lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def photo_answers(photos_dir: Path, tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Result]:
    """`gaea ask --json` on every shared photo with the tiny model, a few processes at a time."""
    photos = sorted(photos_dir.glob("*.jpg"))
    cwd = tmp_path_factory.mktemp("ask")

    def ask(photo: Path) -> subprocess.CompletedProcess:
        return run_gaea("ask", "--model", str(tiny_vlm), "--image", str(photo), "--json", *TOKENS, QUESTION, cwd=cwd)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(photos, pool.map(ask, photos), strict=True))


def test_ask_answers_for_every_shared_photo(photo_answers: dict[Path, Result], tiny_vlm: Path) -> None:
    assert len(photo_answers) >= 10
    answers = []
    for photo, result in photo_answers.items():
        assert result.returncode == 0, f"{photo.name}: {result.stderr}"
        assert "Traceback" not in result.stderr
        record = json.loads(result.stdout)
        assert set(record) == {"image", "question", "answer", "model"}
        assert record["image"] == str(photo) and record["question"] == QUESTION
        assert record["model"] == str(tiny_vlm)
        assert record["answer"].strip(), f"{photo.name}: empty answer"
        answers.append(record["answer"])
    assert len(set(answers)) > 1, "every photo got the same answer: the images are not reaching the model"


def test_ask_stream_prints_the_same_answer(
    photo_answers: dict[Path, Result], photos_dir: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    photo = photos_dir / "DSCN0021.jpg"
    streamed = run_gaea(
        "ask", "--model", str(tiny_vlm), "--image", str(photo), "--stream", *TOKENS, QUESTION, cwd=tmp_path
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == json.loads(photo_answers[photo].stdout)["answer"] + "\n"


@pytest.fixture
def bad_files(photos_dir: Path, tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.jpg"
    text.write_text("this is a shopping list, not a photo\n")
    truncated = tmp_path / "DSCN0010-truncated.jpg"
    data = (photos_dir / "DSCN0010.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    empty = tmp_path / "empty.jpg"
    empty.touch()
    return {"missing": tmp_path / "no-such-photo.jpg", "text": text, "truncated": truncated, "empty": empty}


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing", "no such file"),
        ("text", "not an image"),
        ("truncated", "corrupt or truncated"),
        ("empty", "the file is empty"),
    ],
)
def test_ask_bad_image_fails_fast_with_one_line(
    bad_files: dict[str, Path], tiny_vlm: Path, tmp_path: Path, case: str, problem: str
) -> None:
    image = bad_files[case]
    result = run_gaea("ask", "--model", str(tiny_vlm), "--image", str(image), QUESTION, cwd=tmp_path)
    # One line only also shows the model was never loaded (loading prints its progress on stderr).
    assert_one_line_error(result, str(image), problem)


def test_ask_unreachable_server_is_one_line(photos_dir: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_gaea("ask", "--base-url", url, "--image", str(photos_dir / "DSCN0010.jpg"), QUESTION, cwd=tmp_path)
    assert_one_line_error(result, "cannot reach the model server", url, "is it running?")


def test_ask_unknown_model_offline_points_to_the_demo(photos_dir: Path, tmp_path: Path) -> None:
    result = run_gaea(
        "ask",
        "--image",
        str(photos_dir / "DSCN0010.jpg"),
        QUESTION,
        cwd=tmp_path,
        env={"GAEA_MODEL": "gaea-tests/not-a-model"},
    )
    demo = "gaea tiny-model --out /tmp/gaea-tiny"
    assert_one_line_error(result, "'gaea-tests/not-a-model'", "Hugging Face hub", demo)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--base-url", "http://127.0.0.1:9/v1", "--adapter", "lora"], "--served-model"),
        (["--backend", "openai"], "--backend openai needs --base-url"),
        (["--temperature", "-1"], "--temperature"),
    ],
    ids=["adapter-over-http", "openai-without-url", "negative-temperature"],
)
def test_ask_contradictory_options_are_one_line(
    photos_dir: Path, tmp_path: Path, args: list[str], problem: str
) -> None:
    result = run_gaea("ask", *args, "--image", str(photos_dir / "DSCN0010.jpg"), QUESTION, cwd=tmp_path)
    assert_one_line_error(result, problem)


def test_ask_empty_question_is_one_line(photos_dir: Path, tmp_path: Path) -> None:
    result = run_gaea("ask", "--image", str(photos_dir / "DSCN0010.jpg"), "  ", cwd=tmp_path)
    assert_one_line_error(result, "question is empty")


def test_ask_through_an_openai_compatible_server(photos_dir: Path, tiny_vlm: Path, tmp_path: Path) -> None:
    with transformers_serve(tiny_vlm) as base_url:
        result = run_gaea(
            "ask",
            "--base-url",
            base_url,
            "--image",
            str(photos_dir / "Kodak_CX7530.jpg"),
            "--json",
            *TOKENS,
            QUESTION,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == str(tiny_vlm) and record["answer"].strip()


def test_gaea_console_script_runs_ask(photos_dir: Path, tmp_path: Path) -> None:
    script = shutil.which("gaea", path=str(Path(sys.executable).parent))
    assert script, "the gaea console script is not installed beside this Python (pip install -e .)"
    result = subprocess.run([script, "ask", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: gaea ask" in result.stdout and "--base-url" in result.stdout and "--adapter" in result.stdout


def test_ask_with_a_gallery_and_an_osm_extract(
    photos_dir: Path, shared_data: Path, tiny_vlm: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "gallery"
    built = run_gaea("gallery", "build", "--images", str(photos_dir), "--out", str(gallery),
                     "--encoder", str(tiny_encoder), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    question = "Is there a cafe nearby?"
    result = run_gaea(
        "ask", "--model", str(tiny_vlm), "--gallery", str(gallery),
        "--osm-file", str(shared_data / "osm" / "west-oakland.osm.bz2"),
        "--image", str(photos_dir / "DSCN0010.jpg"), "--json", *TOKENS, question, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["question"] == question and record["answer"].strip()


def test_ask_with_a_missing_gallery_is_one_line(photos_dir: Path, tiny_vlm: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-gallery"
    result = run_gaea("ask", "--model", str(tiny_vlm), "--gallery", str(missing),
                      "--image", str(photos_dir / "DSCN0010.jpg"), QUESTION, cwd=tmp_path)
    assert_one_line_error(result, str(missing))


def test_ask_with_the_hub_out_of_reach_fails_fast_in_one_line(photos_dir: Path, tmp_path: Path) -> None:
    # A closed local port stands in for an unreachable hub; an empty HF_HOME holds no cached copy.
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")}
    result = run_gaea("ask", "--image", str(photos_dir / "DSCN0010.jpg"), QUESTION, cwd=tmp_path, env=env)
    assert_one_line_error(result, "Hugging Face hub", endpoint, "cannot be reached", "make demo")
