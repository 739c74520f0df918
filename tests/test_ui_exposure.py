"""The chat's exposure: no public address without a login unless asked for loudly, an --examples folder serves
its photos and nothing else (a real `gaea ui` process), failed logins slowed down per client, uploads deleted
after a time (real Gradio servers on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gaea.cli import main as gaea_main
from tests.servers import free_port, gradio_app
from tests.test_ui import assistant_text, make_assistant
from ui.security import is_loopback

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assistant(tiny_vlm: Path, tiny_encoder: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return make_assistant(tiny_vlm, tiny_encoder, photos_dir, tmp_path_factory.mktemp("gallery") / "g")


def test_loopback_hosts_are_told_apart_from_public_ones() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "no-such-host.invalid"):
        assert not is_loopback(host), host


def test_a_public_host_without_auth_is_refused_unless_allowed_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    missing_model = str(tmp_path / "no-model")  # every run below stops before anything listens
    assert gaea_main(["ui", "--model", missing_model, "--host", "0.0.0.0"]) == 2
    refusal = capsys.readouterr().err.strip()
    assert len(refusal.splitlines()) == 1
    assert "--host 0.0.0.0" in refusal and "--auth" in refusal and "--allow-public" in refusal

    assert gaea_main(["ui", "--model", missing_model, "--host", "0.0.0.0", "--allow-public"]) == 2
    err = capsys.readouterr().err
    assert "gaea ui: warning: --HOST 0.0.0.0 MAKES THE CHAT REACHABLE FROM OTHER MACHINES" in err
    assert "no-model" in err.splitlines()[-1]  # it went on, to the model

    assert gaea_main(["ui", "--model", missing_model, "--host", "0.0.0.0", "--auth", "ana:s3cret"]) == 2
    err = capsys.readouterr().err
    assert "warning" not in err and "no-model" in err

    assert gaea_main(["ui", "--model", missing_model, "--host", "localhost"]) == 2
    assert "--allow-public" not in capsys.readouterr().err


def test_an_examples_folder_serves_its_photos_and_nothing_else(tiny_vlm: Path, photos_dir: Path,
                                                               tmp_path: Path) -> None:
    examples = tmp_path / "ex"
    examples.mkdir()
    photo = (photos_dir / "DSCN0010.jpg").read_bytes()
    (examples / "arezzo.jpg").write_bytes(photo)
    (examples / ".hidden.jpg").write_bytes(photo)
    (examples / ".env").write_text("OPENAI_API_KEY=sk-do-not-serve")
    (examples / "notes.txt").write_text("private notes")
    (examples / "sub").mkdir()
    (examples / "sub" / "deeper.jpg").write_bytes(photo)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gaea.cli", "ui", "--model", str(tiny_vlm), "--device", "cpu", "--port", str(port),
         "--examples", str(examples)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(root + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert process.poll() is None, process.stdout.read()
        for name in (".env", ".hidden.jpg", "notes.txt", "sub/deeper.jpg"):
            for path in (examples / name, (examples / name).resolve()):
                response = httpx.get(f"{root}/gradio_api/file={path}", timeout=10)
                assert response.status_code in (403, 404), f"{name}: {response.status_code}"
                assert "sk-do-not-serve" not in response.text and "private notes" not in response.text
        served = httpx.get(f"{root}/gradio_api/file={(examples / 'arezzo.jpg').resolve()}", timeout=10)
        assert served.status_code == 200 and served.content == photo
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_failed_logins_are_slowed_down_per_client(assistant) -> None:
    with gradio_app(assistant, auth=("ana", "s3cret")) as root:
        login = root.rstrip("/") + "/login"

        def attempt(password: str) -> httpx.Response:
            return httpx.post(login, data={"username": "ana", "password": password}, timeout=10)

        assert attempt("guess-1").status_code == 400
        refused = attempt("s3cret")  # even the right password waits until the delay has passed
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        time.sleep(1.2)
        assert attempt("guess-2").status_code == 400
        time.sleep(1.2)  # the second failure doubled the delay: 2 s
        again = attempt("guess-3")
        assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1
        time.sleep(1.2)
        assert attempt("s3cret").status_code == 200
        assert attempt("guess-4").status_code == 400  # success cleared the count: 1 s again
        time.sleep(1.2)
        assert attempt("s3cret").status_code == 200


def test_uploads_are_deleted_after_a_time_and_the_chat_says_so(assistant, photos_dir: Path) -> None:
    from gradio_client import Client, handle_file

    with gradio_app(assistant, app_options={"keep_uploads_s": 2}) as url:
        client = Client(url, verbose=False, download_files=False)
        turn = {"text": "Where?", "files": [handle_file(str(photos_dir / "DSCN0010.jpg"))]}
        _textbox, chat = client.predict(turn, api_name="/chat")[:2]
        uploaded = [part["file"]["path"] for message in chat if message["role"] == "user"
                    for part in message["content"] if isinstance(part, dict) and part.get("type") == "file"]
        assert uploaded and Path(uploaded[0]).is_file()
        deadline = time.monotonic() + 60
        while Path(uploaded[0]).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not Path(uploaded[0]).exists(), "the upload should be deleted once it is older than 2 s"
        _textbox, chat = client.predict({"text": "And now?", "files": []}, api_name="/chat")[:2]
        assert "upload it again" in assistant_text(chat)
