"""QA datasets from geotagged photos and OpenStreetMap: photos -> OSM features + context facts -> QA records.

The entry points are `build_dataset` (the `gaea data build` command), `generate_records` (the in-memory
generator for one batch of photos), and the exports in `data_pipeline.export`. Names are imported on first
use so that `import data_pipeline` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BuildConfig": "data_pipeline.build",
    "BuildSummary": "data_pipeline.build",
    "build_dataset": "data_pipeline.build",
    "GenerationConfig": "data_pipeline.generators",
    "generate_records": "data_pipeline.generators",
    "Photo": "data_pipeline.inputs",
    "PhotoItem": "gaea.sources",
    "Skipped": "gaea.sources",
    "read_exif_gps": "gaea.exif",
    "export_dataset": "data_pipeline.export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
