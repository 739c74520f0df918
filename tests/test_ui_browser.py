"""What a person sees: the chat page in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import gradio_app
from tests.test_ui import make_assistant

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def app_url(tiny_vlm: Path, tiny_encoder: Path, photos_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    assistant = make_assistant(tiny_vlm, tiny_encoder, photos_dir, tmp_path_factory.mktemp("gallery") / "g")
    with gradio_app(assistant) as url:
        yield url


@pytest.fixture
def page(browser, app_url: str) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    try:
        yield page
    finally:
        context.close()


def ask(page, file: Path, question: str) -> None:
    page.locator("#gaea-input input[type=file]").set_input_files(str(file))
    box = page.locator("#gaea-input textarea")
    box.fill(question)
    box.press("Enter")


def test_upload_ask_see_the_answer_and_the_map(page, photos_dir: Path, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    # the page opens on a world map drawn from packaged outlines, before anything is asked
    expect(page.locator("#gaea-map svg.gaea-map path").first).to_be_attached(timeout=WAIT_MS)

    ask(page, photos_dir / "DSCN0010.jpg", "Where was this photo taken?")
    expect(page.locator("#gaea-chat [data-testid='user'] img")).to_have_count(1, timeout=WAIT_MS)
    bot = page.locator("#gaea-chat [data-testid='bot']").last
    expect(bot).to_have_text(re.compile(r"\S"), timeout=WAIT_MS)
    expect(page.locator("#gaea-chat")).not_to_contain_text("⚠")

    page.locator("#gaea-locate").click()
    expect(page.locator("#gaea-details")).to_contain_text("Similar gallery photos", timeout=WAIT_MS)
    main_map = page.locator("#gaea-map svg.gaea-map:not(.gaea-overview)")
    expect(main_map).to_be_visible()
    assert main_map.locator("path").count() >= 150, "country outlines should be drawn"
    markers = main_map.locator("circle.gaea-similar, circle.gaea-predicted")
    expect(markers.first).to_be_visible()
    assert markers.count() >= 3
    box = main_map.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100

    screenshot = artifacts_dir / "ui-chat-and-map.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000


def test_locate_on_a_photo_attached_but_not_sent_draws_its_neighbours_on_one_map(page, photos_dir: Path) -> None:
    from playwright.sync_api import expect

    # attached, not sent: the person looks at this photo and asks for the map
    page.locator("#gaea-input input[type=file]").set_input_files(str(photos_dir / "DSCN0010.jpg"))
    expect(page.locator("#gaea-input img, #gaea-input .thumbnail-item")).not_to_have_count(0, timeout=WAIT_MS)
    page.locator("#gaea-locate").click()
    details = page.locator("#gaea-details")
    # DSCN0010.jpg is in the gallery: it is its own nearest neighbour
    expect(details).to_contain_text("similarity 1.00", timeout=WAIT_MS)
    expect(details).not_to_contain_text("Upload a photo first")
    expect(page.locator("#gaea-chat [data-testid='user']")).to_have_count(0)  # nothing was sent
    maps = page.locator("#gaea-map svg.gaea-map")
    expect(maps.first.locator("circle.gaea-similar").first).to_be_attached()
    expect(details).to_contain_text("No usable location")  # the tiny model names no place...
    expect(maps).to_have_count(1)  # ...so the neighbours are drawn on one map, not twice


def test_a_text_file_renamed_jpg_shows_the_error_in_the_page(page, tmp_path: Path, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    fake = tmp_path / "holiday.jpg"
    fake.write_text("this is a text file, not a photo")
    ask(page, fake, "Where is this?")
    bot = page.locator("#gaea-chat [data-testid='bot']").last
    expect(bot).to_contain_text("holiday.jpg", timeout=WAIT_MS)
    expect(bot).to_contain_text("not an image")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(artifacts_dir / "ui-bad-upload.png"), full_page=True)
