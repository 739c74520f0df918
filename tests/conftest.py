"""Shared fixtures: the real data in ../shared/data and tiny offline models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ARTIFACTS = REPO_ROOT / "artifacts"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that need it skip with a clear reason only when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos_dir(shared_data: Path) -> Path:
    return shared_data / "photos"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gaea.models.tiny import build_tiny_encoder, build_tiny_vlm

    root = tmp_path_factory.mktemp("tiny-models")
    build_tiny_vlm(root / "vlm")
    build_tiny_encoder(root / "encoder")
    return root


@pytest.fixture(scope="session")
def tiny_vlm(tiny_models: Path) -> Path:
    """Path of a tiny random Qwen2.5-VL-family model with its image-only processor."""
    return tiny_models / "vlm"


@pytest.fixture(scope="session")
def tiny_encoder(tiny_models: Path) -> Path:
    """Path of a tiny random CLIP image encoder."""
    return tiny_models / "encoder"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep files for people to look at (screenshots); gitignored."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of CPU-heavy training tests: on a small shared CPU more threads thrash
    (restored afterwards). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
