"""Every command that reads from the Hugging Face hub fails in one line, within seconds, when the hub is out of
reach (a closed port on 127.0.0.1 stands in for it; HF_HUB_OFFLINE is unset, the hub cache is empty); recipes
that need an optional package name the extra that installs it; the CPU smoke recipe trains the tiny model."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "finetune" / "recipes"


def gaea(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gaea.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
    )


@pytest.fixture
def unreachable_hub(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine whose hub cannot be reached and whose caches are empty."""
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}
    return {**env, "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "0"}


def one_line_error(result: subprocess.CompletedProcess, command: str, *expected: str) -> str:
    """Exit code 2 and exactly one line on stderr, `gaea COMMAND: error: ...`, holding every expected text."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith(f"gaea {command}: error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


HUB_COMMANDS = {  # case -> (command, its arguments, the hub id the error names)
    "finetune with a README recipe": (
        "finetune train",
        ["--config", str(RECIPES / "qlora-qwen2.5-vl-7b-24gb.yaml"), "--data", "data", "--output-dir", "run"],
        "'Qwen/Qwen2.5-VL-7B-Instruct'",
    ),
    "finetune merge": (
        "finetune merge", ["--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--adapter", "adapter", "--out", "merged"],
        "'Qwen/Qwen2.5-VL-7B-Instruct'",
    ),
    "eval bench on the hub's GAEA-Bench": (
        "eval bench", ["--dataset", "hf:ucf-crcv/GAEA-Bench", "--model", "model", "--judge-free", "--out", "bench"],
        "'ucf-crcv/GAEA-Bench'",
    ),
    "gallery build with the default encoder": (
        "gallery build", ["--images", "photos", "--out", "gallery"], "'openai/clip-vit-large-patch14'",
    ),
}


@pytest.mark.parametrize("case", sorted(HUB_COMMANDS))
def test_a_hub_command_fails_in_one_line_when_the_hub_is_out_of_reach(
    case: str, unreachable_hub: dict[str, str], tmp_path: Path, photos_dir: Path
) -> None:
    command, args, named = HUB_COMMANDS[case]
    (tmp_path / "data").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "photos").symlink_to(photos_dir)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    result = gaea(*command.split(), *args, cwd=tmp_path, env=unreachable_hub)
    line = one_line_error(result, command, named, unreachable_hub["HF_ENDPOINT"], "cannot be reached", "offline")
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr
    assert "make demo" in line or "local dataset" in line


def test_with_hf_hub_offline_set_a_model_missing_from_the_cache_is_one_line(
    unreachable_hub: dict[str, str], tmp_path: Path, photos_dir: Path
) -> None:
    (tmp_path / "photos").symlink_to(photos_dir)
    result = gaea("gallery", "build", "--images", "photos", "--out", "gallery", cwd=tmp_path,
                  env={**unreachable_hub, "HF_HUB_OFFLINE": "1"})
    one_line_error(result, "gallery build", "'openai/clip-vit-large-patch14'", "HF_HUB_OFFLINE", "make demo")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None,
                    reason="deepspeed is installed here, so the GAEA recipe cannot show its missing-package message")
def test_the_gaea_recipe_without_deepspeed_names_the_extra(tiny_vlm: Path, tmp_path: Path) -> None:
    result = gaea("finetune", "train", "--config", str(RECIPES / "gaea-qwen2.5-vl-7b.yaml"), "--model-name-or-path",
                  str(tiny_vlm), "--data", str(tmp_path), "--output-dir", str(tmp_path / "run"),
                  cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    one_line_error(result, "finetune train", "deepspeed", "pip install -e .[deepspeed]")
    assert "PackageNotFoundError" not in result.stderr


def test_the_cpu_smoke_recipe_trains_the_tiny_model_quietly(
    tiny_vlm: Path, tmp_path: Path, shared_data: Path
) -> None:
    data = tmp_path / "data"
    built = gaea("data", "build", "--images", str(shared_data / "photos"), "--out", str(data), "--osm-file",
                 str(shared_data / "osm" / "west-oakland.osm.bz2"), "--no-hf", "--quiet",
                 cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert built.returncode == 0, built.stderr
    result = gaea("finetune", "train", "--config", str(RECIPES / "cpu-smoke.yaml"),
                  "--model-name-or-path", str(tiny_vlm), "--data", str(data), "--output-dir", str(tmp_path / "run"),
                  cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "adapter saved to" in result.stdout and "step=4" in result.stdout
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    # third-party noise that does not concern the user stays out of the run's output
    for noise in ("gemm_4bit_forward", "is_gradient_checkpointing", "Traceback"):
        assert noise not in result.stderr
