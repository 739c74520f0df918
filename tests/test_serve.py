"""`gaea serve`: the vLLM command line flag by flag, and a real `transformers serve` started, used and stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaea.cli import main as gaea_main
from gaea.errors import BackendError, BadInputError, ConfigError
from gaea.models.backends import load_backend
from gaea.models.serving import (
    DEFAULT_MAX_MODEL_LEN,
    ServerProcess,
    build_transformers_command,
    build_vllm_command,
    choose_engine,
    health_path,
    parse_adapter,
)
from gaea.types import GenerationParams, Message
from tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_adapter(folder: Path, rank: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank}))
    return folder


def flag_values(command: list[str], flag: str) -> list[str]:
    """The values after `flag` up to the next flag."""
    start = command.index(flag) + 1
    values = []
    for item in command[start:]:
        if item.startswith("--"):
            break
        values.append(item)
    return values


@pytest.fixture
def two_adapters(tmp_path: Path) -> list:
    return [
        parse_adapter(f"gaea-geo={make_adapter(tmp_path / 'geo', 24)}"),
        parse_adapter(f"gaea-osm={make_adapter(tmp_path / 'osm', 8)}"),
    ]


def test_vllm_command_serves_the_model_with_each_flag(two_adapters: list) -> None:
    command = build_vllm_command(
        "Qwen/Qwen2.5-VL-7B-Instruct", adapters=two_adapters, host="0.0.0.0", port=8123,
        tensor_parallel_size=2, max_model_len=16384, images_per_prompt=3, served_model_name="gaea-base",
    )
    assert command[:3] == ["vllm", "serve", "Qwen/Qwen2.5-VL-7B-Instruct"]
    assert flag_values(command, "--host") == ["0.0.0.0"]
    assert flag_values(command, "--port") == ["8123"]
    assert flag_values(command, "--served-model-name") == ["gaea-base"]
    assert flag_values(command, "--tensor-parallel-size") == ["2"]
    assert flag_values(command, "--max-model-len") == ["16384"]
    assert json.loads(flag_values(command, "--limit-mm-per-prompt")[0]) == {"image": 3}
    assert "--enable-lora" in command
    geo, osm = two_adapters
    assert flag_values(command, "--lora-modules") == [f"gaea-geo={geo.path}", f"gaea-osm={osm.path}"]
    # rank 24 is not one vLLM accepts: the next allowed one up
    assert flag_values(command, "--max-lora-rank") == ["32"]
    assert flag_values(command, "--max-loras") == ["2"]


def test_vllm_command_defaults_without_adapters() -> None:
    command = build_vllm_command("Qwen/Qwen2.5-VL-3B-Instruct")
    assert flag_values(command, "--host") == ["127.0.0.1"]
    assert flag_values(command, "--port") == ["8000"]
    assert flag_values(command, "--served-model-name") == ["Qwen/Qwen2.5-VL-3B-Instruct"]
    assert flag_values(command, "--tensor-parallel-size") == ["1"]
    assert flag_values(command, "--max-model-len") == [str(DEFAULT_MAX_MODEL_LEN)]
    assert json.loads(flag_values(command, "--limit-mm-per-prompt")[0])["image"] >= 1
    assert not {"--enable-lora", "--lora-modules", "--max-lora-rank"} & set(command)


def test_vllm_max_model_len_stays_within_a_local_models_positions(tiny_vlm: Path) -> None:
    config = json.loads((tiny_vlm / "config.json").read_text())
    positions = (config.get("text_config") or {}).get("max_position_embeddings") or config["max_position_embeddings"]
    command = build_vllm_command(str(tiny_vlm))
    assert flag_values(command, "--max-model-len") == [str(min(positions, DEFAULT_MAX_MODEL_LEN))]


@pytest.mark.parametrize("rank, expected", [(1, "1"), (8, "8"), (16, "16"), (17, "32"), (300, "320"), (512, "512")])
def test_vllm_lora_rank_is_rounded_up_to_an_allowed_one(tmp_path: Path, rank: int, expected: str) -> None:
    adapter = parse_adapter(f"a={make_adapter(tmp_path / 'a', rank)}")
    assert flag_values(build_vllm_command("m", adapters=[adapter]), "--max-lora-rank") == [expected]


def test_bad_adapters_and_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="expected NAME=PATH"):
        parse_adapter(str(tmp_path))
    with pytest.raises(BadInputError, match="no adapter_config.json"):
        parse_adapter(f"a={tmp_path}")
    (tmp_path / "adapter_config.json").write_text('{"r": "eight"}')
    with pytest.raises(BadInputError, match="positive integer"):
        parse_adapter(f"a={tmp_path}")
    with pytest.raises(ConfigError, match="above 512"):
        build_vllm_command("m", adapters=[parse_adapter(f"a={make_adapter(tmp_path / 'big', 1024)}")])
    small = parse_adapter(f"a={make_adapter(tmp_path / 'small', 8)}")
    with pytest.raises(ConfigError, match="unique"):
        build_vllm_command("m", adapters=[small, small])
    with pytest.raises(ConfigError, match="at least 1"):
        build_vllm_command("m", tensor_parallel_size=0)


def test_engine_auto_picks_vllm_only_where_it_is_installed() -> None:
    import importlib.util

    has_vllm = importlib.util.find_spec("vllm") is not None
    assert choose_engine("auto") == ("vllm" if has_vllm else "transformers")
    assert health_path("vllm") == "/health" and health_path("transformers") == "/v1/models"
    if not has_vllm:
        with pytest.raises(ConfigError, match="vLLM is not installed"):
            choose_engine("vllm")


def test_transformers_engine_refuses_adapters_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    adapter = make_adapter(tmp_path / "lora", 8)
    code = gaea_main(["serve", "--engine", "transformers", "--model", "m", "--adapter", f"geo={adapter}"])
    assert code == 2
    assert "cannot serve LoRA adapters" in capsys.readouterr().err


def test_a_server_that_dies_is_reported_with_its_last_lines(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('loading weights failed: no such file'); sys.exit(3)"]
    server = ServerProcess(command, f"http://127.0.0.1:{free_port()}", "/health", log_path=tmp_path / "server.log")
    server.start()
    with pytest.raises(BackendError, match=r"exited with code 3(.|\n)*loading weights failed"):
        server.wait_until_ready(timeout_s=30)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (read from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _read_until_ready(process: subprocess.Popen, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("ready:"):
            return lines
    process.kill()
    raise AssertionError(f"gaea serve was not ready; stdout: {lines}; stderr: {process.stderr.read()}")


def test_transformers_command_runs_the_stock_cli_through_gaea() -> None:
    command = build_transformers_command("/models/tiny", host="127.0.0.1", port=9001)
    assert command[:4] == [sys.executable, "-m", "gaea.models.serving", "transformers"]
    assert command[4:6] == ["serve", "/models/tiny"]
    assert flag_values(command, "--port") == ["9001"] and flag_values(command, "--host") == ["127.0.0.1"]


def test_gaea_serve_transformers_answers_an_image_chat_and_stops_on_ctrl_c(tiny_vlm: Path, photos_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gaea.cli", "serve", "--engine", "transformers", "--model", str(tiny_vlm),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
    )
    try:
        lines = _read_until_ready(process, timeout_s=240)
        assert f"http://127.0.0.1:{port}/v1" in lines[-1] and str(tiny_vlm) in lines[-1]
        servers = _children(process.pid)
        assert servers, "gaea serve should run the server as its child"

        backend = load_backend("openai", base_url=f"http://127.0.0.1:{port}/v1")
        assert backend.name == str(tiny_vlm)
        photo = photos_dir / "Canon_40D.jpg"
        answer = backend.generate(
            [Message.user("Where was this photo taken?", images=[photo])], params=GenerationParams(max_new_tokens=8)
        )
        assert isinstance(answer, str) and answer.strip()
        backend.close()

        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=180)  # generous: a loaded CI machine stops slowly
        assert process.returncode == 0, err
        assert "stopped" in out
        for pid in servers:
            assert not Path(f"/proc/{pid}").exists(), f"server process {pid} outlived gaea serve"
        assert _port_is_free(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
