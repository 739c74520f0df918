"""The Gradio app through gradio_client (a real server on 127.0.0.1, the real Assistant on the tiny model),
and the map drawn offline from packaged country outlines."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gaea.errors import BadInputError
from gaea.models.backends import load_backend
from gaea.types import GenerationParams, Neighbor, Prediction
from tests.servers import free_port, gradio_app
from ui.app import launch_kwargs, prediction_markdown
from ui.cli import parse_auth
from ui.map import country_outlines, map_html, map_svg, view_box

NOTHING_ATTACHED = {"text": "", "files": []}


def make_assistant(tiny_vlm: Path, tiny_encoder: Path, photos_dir: Path, gallery_dir: Path):
    """The real Assistant on the tiny chat model, with a gallery of the geotagged shared photos embedded by the
    tiny encoder (so Locate has neighbours to draw even though the tiny model's answers name no place)."""
    from gaea import Assistant
    from gaea.retrieval import Embedder, Retriever, build_gallery

    gallery = build_gallery(photos_dir, gallery_dir, Embedder(str(tiny_encoder)), show_progress=False)
    backend = load_backend("transformers", model=str(tiny_vlm), device="cpu")
    return Assistant(
        backend, Retriever(gallery, Embedder(str(tiny_encoder))), k_similar=3, k_dissimilar=2,
        params=GenerationParams(max_new_tokens=12),
    )


@pytest.fixture(scope="module")
def assistant(tiny_vlm: Path, tiny_encoder: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return make_assistant(tiny_vlm, tiny_encoder, photos_dir, tmp_path_factory.mktemp("gallery") / "g")


@pytest.fixture(scope="module")
def app_url(assistant) -> Iterator[str]:
    with gradio_app(assistant) as url:
        yield url


def expected_gps(photos_dir: Path) -> dict[str, tuple[float, float]]:
    with open(photos_dir / "expected_gps.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row["file"]: (float(row["lat"]), float(row["lon"])) for row in rows if row.get("lat")}


def assistant_text(chat: list[dict]) -> str:
    """The text of the last assistant bubble of a chatbot value as gradio_client returns it."""
    last = [message for message in chat if message["role"] == "assistant"][-1]
    content = last["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def test_a_turn_with_a_photo_and_text_streams_an_answer_then_the_photo_stays(app_url: str, photos_dir: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=False)
    photo = photos_dir / "Canon_40D.jpg"
    turn = {"text": "Where was this photo taken?", "files": [handle_file(str(photo))]}
    job = client.submit(turn, api_name="/chat")
    _textbox, chat = job.result(timeout=120)[:2]
    answer = assistant_text(chat)
    assert answer.strip() and "⚠" not in answer
    updates = [assistant_text(output[1]) for output in job.outputs() if output[1]]
    assert len(updates) >= 2, "the answer should arrive in pieces"
    assert all(answer.startswith(update) for update in updates)

    # the next turn sends no file: the photo of the first one is still the one talked about
    _textbox, chat2 = client.predict({"text": "What country is that?", "files": []}, api_name="/chat")[:2]
    assert assistant_text(chat2).strip() and "Upload a photo first" not in assistant_text(chat2)
    assert len(chat2) > len(chat)


def test_locate_answers_with_the_map_and_details(app_url: str, photos_dir: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=False)
    client.predict({"text": "", "files": [handle_file(str(photos_dir / "Canon_40D.jpg"))]}, api_name="/chat")
    map_panel, details = client.predict(NOTHING_ATTACHED, api_name="/locate")
    assert "<svg" in map_panel and map_panel.count("<path") >= 150
    # the gallery's nearest photos are drawn and named, whether or not the tiny model's answer names a place
    assert map_panel.count('class="gaea-similar"') >= 3 and map_panel.count('class="gaea-dissimilar"') >= 2
    assert "Similar gallery photos" in details
    # the tiny model's answers name no place: with no point to zoom on, one map of every neighbour, drawn once
    assert "No usable location" in details
    assert map_panel.count("<svg") == 1 and "gaea-overview" not in map_panel


def test_locate_uses_the_photo_attached_but_not_sent(app_url: str, photos_dir: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False, download_files=False)
    client.predict({"text": "", "files": [handle_file(str(photos_dir / "Canon_40D.jpg"))]}, api_name="/chat")
    # DSCN0010.jpg is in the gallery: Locate on it finds itself first, with similarity 1.00
    attached = {"text": "", "files": [handle_file(str(photos_dir / "DSCN0010.jpg"))]}
    _map, details = client.predict(attached, api_name="/locate")
    lat, lon = expected_gps(photos_dir)["DSCN0010.jpg"]
    assert f"({lat:.3f}, {lon:.3f}; similarity 1.00)" in details.split("**Dissimilar")[0]
    # with nothing attached, Locate is about the conversation's photo again (not in the gallery)
    _map, details = client.predict(NOTHING_ATTACHED, api_name="/locate")
    assert "Similar gallery photos" in details and "similarity 1.00" not in details


def test_without_a_predicted_point_the_neighbours_are_drawn_on_one_map() -> None:
    prediction = Prediction(
        raw="somewhere nice",
        similar=[Neighbor("near", 43.46, 11.88, 0.93, "Arezzo"), Neighbor("next", 43.47, 11.87, 0.9, "Arezzo")],
        dissimilar=[Neighbor("far", -1.29, 36.82, 0.04, "Nairobi")],
    )
    panel = map_html(prediction)
    assert panel.count("<svg") == 1 and "gaea-overview" not in panel
    assert panel.count('class="gaea-similar"') == 2 and panel.count('class="gaea-dissimilar"') == 1
    # the one map frames every neighbour, the far dissimilar one too
    west, north_neg, span_lon, span_lat = map(float, re.search(r'viewBox="([^"]+)"', panel).group(1).split())
    for lat, lon in ((43.46, 11.88), (-1.29, 36.82)):
        assert west < lon < west + span_lon and north_neg < -lat < north_neg + span_lat


def test_a_text_file_named_jpg_gets_a_readable_message(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo")
    _textbox, chat = Client(app_url, verbose=False, download_files=False).predict(
        {"text": "Where is this?", "files": [handle_file(str(fake))]}, api_name="/chat"
    )[:2]
    message = assistant_text(chat)
    assert "holiday.jpg" in message and "not an image" in message
    assert "Traceback" not in message and str(tmp_path) not in message


def test_a_question_before_any_photo_asks_for_one(app_url: str) -> None:
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=False)
    _textbox, chat = client.predict({"text": "Where?", "files": []}, api_name="/chat")[:2]
    assert "Upload a photo first" in assistant_text(chat)


def test_the_app_serves_no_files_but_its_own(app_url: str) -> None:
    for path in ("gradio_api/file=/etc/passwd", "file=/etc/passwd", f"gradio_api/file={Path(__file__).resolve()}"):
        response = httpx.get(app_url + path, timeout=10)
        assert response.status_code in (403, 404), path
        assert "root:" not in response.text


def test_login_is_required_when_auth_is_set(assistant) -> None:
    with gradio_app(assistant, auth=("ana", "s3cret")) as root:
        url = root.rstrip("/")
        assert httpx.get(url + "/config", timeout=10).status_code == 401
        login = httpx.post(url + "/login", data={"username": "ana", "password": "s3cret"}, timeout=10)
        assert login.status_code == 200
        assert httpx.get(url + "/config", cookies=login.cookies, timeout=10).status_code == 200


def test_launch_defaults_keep_the_app_private() -> None:
    options = launch_kwargs()
    assert options["server_name"] == "127.0.0.1" and options["share"] is False
    assert options["allowed_paths"] == [] and options["auth"] is None
    assert options["max_file_size"] > 0


def test_auth_option_is_checked() -> None:
    assert parse_auth("ana:pa:ss") == ("ana", "pa:ss")
    for bad in ("ana", "ana:", ":pass"):
        with pytest.raises(BadInputError, match="USER:PASS"):
            parse_auth(bad)


def test_country_outlines_come_from_the_installed_package() -> None:
    outlines = dict(country_outlines())
    assert len(outlines) >= 170
    assert {"Italy", "Kenya", "Germany", "Brazil"} <= set(outlines)


def test_the_map_draws_the_point_over_its_country_with_nothing_from_the_network(photos_dir: Path) -> None:
    lat, lon = next(iter(expected_gps(photos_dir).values()))
    prediction = Prediction(
        lat=lat, lon=lon, city="Arezzo", country="Italy", confidence=0.6,
        similar=[Neighbor("near", lat + 0.2, lon - 0.3, 0.93, "nearby")],
        dissimilar=[Neighbor("far", -1.29, 36.82, 0.04, "Nairobi")],
    )
    svg = map_svg(prediction)
    marker = re.search(r'class="gaea-predicted" cx="([-\d.]+)" cy="([-\d.]+)"', svg)
    assert marker and abs(float(marker.group(1)) - lon) < 1e-3 and abs(float(marker.group(2)) + lat) < 1e-3
    assert svg.count('class="gaea-similar"') == 1
    west, north_neg, span_lon, span_lat = map(float, re.search(r'viewBox="([^"]+)"', svg).group(1).split())
    assert west < lon < west + span_lon and north_neg < -lat < north_neg + span_lat
    # dissimilar neighbours are far away: they are drawn on the overview, which frames them too
    panel = map_html(prediction)
    assert 'gaea-overview' in panel and panel.count('class="gaea-dissimilar"') == 2
    # the interactive map needs tiles from the internet: it is there, folded, centred on the point
    folded = re.search(r'<details class="gaea-interactive"><summary>[^<]*</summary><iframe src="([^"]+)"', panel)
    assert folded and f"marker={lat:.5f},{lon:.5f}" in folded.group(1)
    assert not re.search(r'(src|href)="https?://(?!www\.openstreetmap\.org)', panel)


def test_the_map_without_a_prediction_is_the_world() -> None:
    box = view_box([])
    assert (box.west, box.north, box.span_lon, box.span_lat) == (-180.0, 90.0, 360.0, 180.0)
    assert map_svg(None).count("<path") >= 170 and "gaea-predicted" not in map_svg(None)


def test_the_details_say_city_country_coordinates_and_confidence() -> None:
    text = prediction_markdown(Prediction(lat=-0.3031, lon=36.08, city="Nakuru", country="Kenya", confidence=0.42))
    assert "Nakuru, Kenya" in text and "-0.30310, 36.08000" in text and "42%" in text
    assert "No usable location" in prediction_markdown(Prediction(raw="somewhere nice"))


def test_a_heic_photo_is_accepted_and_shown_to_the_browser_as_jpeg(app_url: str, photos_dir: Path, tmp_path: Path):
    from gradio_client import Client, handle_file

    from gaea.images import load_image, register_heif

    assert register_heif(), "pillow-heif should be installed (a dependency)"
    heic = tmp_path / "iphone.heic"
    load_image(photos_dir / "DSCN0010.jpg").save(heic, format="HEIF")
    client = Client(app_url, verbose=False, download_files=False)
    _textbox, chat = client.predict({"text": "Where?", "files": [handle_file(str(heic))]}, api_name="/chat")[:2]
    files = [part["file"] for message in chat if message["role"] == "user" for part in message["content"]
             if isinstance(part, dict) and part.get("type") == "file"]
    shown = [file["path"] if isinstance(file, dict) else file for file in files]
    assert len(shown) == 1 and shown[0].endswith(".preview.jpg")
    assert assistant_text(chat).strip() and "⚠" not in assistant_text(chat)


def test_gaea_ui_refuses_bad_options_before_loading_a_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gaea.cli import main as gaea_main

    assert gaea_main(["ui", "--model", str(tmp_path / "no-model"), "--auth", "nopassword"]) == 2
    assert "USER:PASS" in capsys.readouterr().err
    assert gaea_main(["ui", "--model", str(tmp_path / "no-model"), "--examples", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_examples_are_the_given_folders_photos_and_only_they_are_served(tmp_path: Path, photos_dir: Path) -> None:
    from ui.app import example_photos

    (tmp_path / "arezzo.jpg").write_bytes((photos_dir / "DSCN0010.jpg").read_bytes())
    (tmp_path / ".hidden.jpg").write_bytes((photos_dir / "DSCN0010.jpg").read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-secret")
    (tmp_path / "link.jpg").symlink_to(tmp_path / ".env")
    photo = str((tmp_path / "arezzo.jpg").resolve())
    assert example_photos(tmp_path) == [photo]
    assert example_photos(None) == []
    assert launch_kwargs(examples_dir=tmp_path)["allowed_paths"] == [photo]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no photos"):
        example_photos(empty)


def test_gaea_ui_starts_on_loopback_serves_the_page_and_stops_on_ctrl_c(tiny_vlm: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    repo_root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gaea.cli", "ui", "--model", str(tiny_vlm), "--device", "cpu", "--port", str(port)],
        cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline, page = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200, process.stdout.read() if process.poll() else "no page"
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        assert "gaea-chat" in json.dumps(config) and "gaea-map" in json.dumps(config)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) in (0, 130)  # closed by Gradio, or by `gaea`'s "interrupted"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
