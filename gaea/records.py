"""The QA record: one schema shared by data_pipeline (writes it), finetune (trains on it) and eval
(scores it). Compatible with the released GAEA-Bench fields, plus `id`, `source` and `evidence`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gaea.errors import BadInputError

QUESTION_TYPES = ("MCQ", "TF", "SVQA", "LVQA", "LOC")


@dataclass
class QARecord:
    """One question about one photo.

    `image` is a path relative to the dataset directory; `options` is set for MCQ only; `evidence`
    lists the OSM elements (osm_type, osm_id, name, tags, lat, lon, distance_m) and context facts
    (kind, value) the answer was built from.
    """

    id: str
    image: str
    question: str
    answer: str
    question_type: str
    lat: float | None = None
    lon: float | None = None
    location: str = ""
    options: list[str] | None = None
    source: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QARecord:
        missing = [key for key in ("question", "answer", "question_type") if key not in data]
        if missing:
            raise BadInputError(f"QA record {data.get('id', '?')!r} lacks {', '.join(missing)}")
        qtype = str(data["question_type"]).upper()
        if qtype not in QUESTION_TYPES:
            raise BadInputError(f"QA record {data.get('id', '?')!r}: unknown question_type {data['question_type']!r}")
        image = data.get("image") or ""
        return cls(
            id=str(data.get("id") or stable_id(str(image), str(data["question"]))),
            image=str(image) if not isinstance(image, dict) else str(image.get("path", "")),
            question=str(data["question"]),
            answer=str(data["answer"]),
            question_type=qtype,
            lat=_float_or_none(data.get("lat")),
            lon=_float_or_none(data.get("lon")),
            location=str(data.get("location") or ""),
            options=list(data["options"]) if data.get("options") else None,
            source=str(data.get("source") or ""),
            evidence=_evidence(data.get("evidence")),
        )


def stable_id(image: str, question: str) -> str:
    """An id that is the same on every machine for the same image and question."""
    return hashlib.sha1(f"{image}\x00{question}".encode()).hexdigest()[:16]


def _evidence(value: Any) -> list[dict[str, Any]]:
    # Datasets store evidence as one JSON string (its items have different keys).
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    return list(value) if isinstance(value, list) else []


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
