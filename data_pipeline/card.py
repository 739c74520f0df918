"""Dataset statistics and the dataset card (README.md) of a built dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from data_pipeline.export import dataset_records
from data_pipeline.generators import ALL_TYPES
from gaea.io import atomic_write_text, read_jsonl


def dataset_stats(dataset_dir: str | Path) -> dict[str, Any]:
    """Counts of a built dataset: records per type and source, photos, TF balance, skipped photos per reason.

    A record id seen again (a dataset that two builds wrote at once, before builds held a lock) is counted
    once, and the repeats under ``duplicates``.
    """
    dataset_dir = Path(dataset_dir)
    seen: set[str] = set()
    duplicates = 0
    by_type: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    tf: Counter[str] = Counter()
    images: set[str] = set()
    osm_elements = 0
    for record in dataset_records(dataset_dir):
        if record.get("id") is not None:
            if record["id"] in seen:
                duplicates += 1
                continue
            seen.add(record["id"])
        by_type[record["question_type"]] += 1
        by_source[record.get("source") or "unknown"] += 1
        images.add(record["image"])
        if record["question_type"] == "TF":
            tf[record["answer"]] += 1
        osm_elements += sum(1 for item in record.get("evidence") or [] if "osm_id" in item)
    skipped = Counter(entry.get("reason", "unknown") for entry in read_jsonl(dataset_dir / "skipped.jsonl"))
    return {
        "records": sum(by_type.values()),
        "by_type": {qtype: by_type[qtype] for qtype in ALL_TYPES if by_type[qtype]},
        "by_source": dict(sorted(by_source.items())),
        "photos": len(images),
        "tf_true": tf["True"],
        "tf_false": tf["False"],
        "osm_evidence_elements": osm_elements,
        "skipped": dict(sorted(skipped.items())),
        "duplicates": duplicates,
    }


def _table(title: str, counts: dict[str, int], *, unit: str = "records") -> list[str]:
    rows = [f"| {title} | {unit} |", "|---|---:|"]
    rows += [f"| {key} | {value} |" for key, value in counts.items()]
    return rows


def render_card(stats: dict[str, Any], *, config: dict[str, Any] | None = None) -> str:
    """The dataset card text: YAML header for the Hugging Face hub, counts, schema, provenance, license."""
    lines = [
        "---",
        "license: odbl",
        "task_categories:",
        "- visual-question-answering",
        "language:",
        "- en",
        "tags:",
        "- geolocation",
        "- openstreetmap",
        "---",
        "",
        "# Geolocation QA dataset",
        "",
        "Questions and answers about where each photo was taken and what is around it, built by "
        "`gaea data build` from the photos' GPS positions, OpenStreetMap features within the search radius "
        "and offline reverse geocoding (GeoNames). Every answer cites its evidence.",
        "",
        f"- records: {stats['records']}",
        f"- photos: {stats['photos']}",
        f"- true/false balance: {stats['tf_true']} true, {stats['tf_false']} false",
        f"- OSM elements cited as evidence: {stats['osm_evidence_elements']}",
        "",
        "## Records per question type",
        "",
        *_table("type", stats["by_type"]),
        "",
        "## Records per source",
        "",
        *_table("source", stats["by_source"]),
        "",
        "## Skipped photos",
        "",
        *(_table("reason", stats["skipped"], unit="photos") if stats["skipped"] else ["None."]),
        "",
        "## Fields",
        "",
        "`id`, `image` (path relative to this folder), `question`, `answer`, `question_type` "
        "(MCQ, TF, SVQA, LVQA, LOC), `options` (MCQ), `lat`, `lon`, `location` (\"City, Country\"), `source`, "
        "`evidence`: the OSM elements used (`osm_type`, `osm_id`, `name`, the `tags` used, `lat`, `lon`, "
        "`distance_m` from the photo) and the context facts used (`kind`, `value`, `source`).",
        "",
        "Files: `qa.jsonl`, `hf/` (`datasets.load_from_disk`: one row per distinct image, stored once, its records "
        "in `records`), `skipped.jsonl`, `images/`.",
        "",
    ]
    if config:
        lines += ["## Build settings", "", "```json", json.dumps(config, indent=2), "```", ""]
    lines += [
        "## License and attribution",
        "",
        "Map data © OpenStreetMap contributors, available under the Open Database License (ODbL). "
        "Place names from GeoNames (CC BY 4.0). Photos keep the licenses of their owners.",
        "",
    ]
    return "\n".join(lines)


def write_card(dataset_dir: str | Path, *, config: dict[str, Any] | None = None) -> Path:
    """Write README.md (the dataset card) into `dataset_dir`."""
    path = Path(dataset_dir) / "README.md"
    atomic_write_text(path, render_card(dataset_stats(dataset_dir), config=config))
    return path
