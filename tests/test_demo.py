"""`make demo` offline: the tiny models and a gallery of geotagged photos (the shared ones, else the synthetic
examples shipped in ui/examples), so that Locate in the demo chat has neighbours to draw on the map."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gaea.exif import read_exif_gps

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "ui" / "examples"


def make(*args: str) -> subprocess.CompletedProcess:
    # VENV is this interpreter's environment, so `make` runs the gaea of this checkout without installing it
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"VENV={sys.prefix}"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
    )


def test_make_demo_builds_a_gallery_so_locate_has_neighbours(shared_data: Path, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    built = make("demo-assets", f"DEMO_DIR={demo}")
    assert built.returncode == 0, built.stderr
    manifest = json.loads((demo / "gallery" / "manifest.json").read_text())
    assert manifest["count"] == 8  # the shared photos with GPS (two of the ten have none)
    assert make("demo-assets", f"DEMO_DIR={demo}").stdout.strip().endswith("Nothing to be done for 'demo-assets'.")

    # the chat `make demo` starts: the demo model, this gallery, the same photos as examples
    planned = make("-n", "demo", f"DEMO_DIR={demo}").stdout.splitlines()
    ui_line = next(line for line in planned if " ui " in line)
    assert f"--gallery {demo}/gallery" in ui_line and "--examples ../shared/data/photos" in ui_line
    located = subprocess.run(
        [sys.executable, "-m", "gaea.cli", "locate", "--model", str(demo / "tiny" / "vlm"), "--gallery",
         str(demo / "gallery"), "--json", "--max-new-tokens", "8", str(shared_data / "photos" / "DSCN0010.jpg")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert located.returncode == 0, located.stderr
    prediction = json.loads(located.stdout)
    assert len(prediction["similar"]) >= 3 and prediction["similar"][0]["similarity"] > 0.99


def test_the_shipped_examples_are_geotagged_all_over_the_world(tiny_encoder: Path, tmp_path: Path) -> None:
    from gaea.retrieval import Embedder, build_gallery

    photos = sorted(EXAMPLES.glob("*.jpg"))
    points = [read_exif_gps(photo) for photo in photos]
    assert len(points) == 8
    assert any(lat < 0 for lat, _ in points) and any(lon < 0 for _, lon in points)  # both hemispheres
    gallery = build_gallery(EXAMPLES, tmp_path / "gallery", Embedder(str(tiny_encoder)), show_progress=False)
    assert len(gallery) == 8
