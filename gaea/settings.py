"""Typed, documented defaults. Each can be overridden by an environment variable; a None argument
anywhere in the code base means "use the setting"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    #: Default vision-language model for `gaea ask`, `gaea locate`, `gaea ui` (hub id or local path).
    model: str = field(default_factory=lambda: _env("GAEA_MODEL", "Qwen/Qwen2.5-VL-3B-Instruct"))
    #: Default image encoder for galleries (Img2Loc uses CLIP ViT-L/14).
    encoder: str = field(default_factory=lambda: _env("GAEA_ENCODER", "openai/clip-vit-large-patch14"))
    #: Where caches (Overpass responses, downloaded files) live.
    cache_dir: Path = field(default_factory=lambda: Path(_env("GAEA_CACHE_DIR", str(Path.home() / ".cache" / "gaea"))))
    #: Public Overpass API endpoint.
    overpass_url: str = field(default_factory=lambda: _env("GAEA_OVERPASS_URL", "https://overpass-api.de/api/interpreter"))
    #: Longest silence of a model server, in seconds: to connect, to start answering, between two pieces of a
    #: stream (a stalled server fails in two such waits: one try and one retry).
    http_timeout_s: float = field(default_factory=lambda: float(_env("GAEA_HTTP_TIMEOUT", "20")))
    #: Most seconds one answer of a model server may take in all, retries included (keep-alives do not extend it).
    answer_deadline_s: float = field(default_factory=lambda: float(_env("GAEA_ANSWER_DEADLINE", "300")))
    #: Retries after a 429 / 5xx / dropped connection before giving up (a timeout is retried once).
    http_retries: int = field(default_factory=lambda: int(_env("GAEA_HTTP_RETRIES", "4")))
    #: Largest image file accepted, in bytes.
    max_image_bytes: int = field(default_factory=lambda: int(_env("GAEA_MAX_IMAGE_BYTES", str(40 * 1024 * 1024))))
    #: Largest image accepted, in pixels (guards against decompression bombs).
    max_image_pixels: int = field(default_factory=lambda: int(_env("GAEA_MAX_IMAGE_PIXELS", str(100_000_000))))
    #: OSM extracts of at least this many megabytes are opened through their on-disk feature store (built once
    #: beside the extract, see `gaea osm index`); smaller ones are read into memory.
    osm_store_min_mb: float = field(default_factory=lambda: float(_env("GAEA_OSM_STORE_MIN_MB", "8")))
    #: Memory a feature store may use, in megabytes: for its build (node locations, sort buffers) and for the
    #: blocks a reader keeps after use.
    osm_store_memory_mb: int = field(default_factory=lambda: int(_env("GAEA_OSM_STORE_MEMORY_MB", "1024")))
    #: Identifies us to public services (Overpass asks for it).
    user_agent: str = "gaea-geolocation/0.1 (+https://github.com/gaea-geolocation/gaea)"


def get_settings() -> Settings:
    """Settings as the environment says now (read on every call so tests can change the environment)."""
    return Settings()
