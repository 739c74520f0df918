"""Training samples from every dataset layout we accept, as chat conversations with their images.

Layouts:

- ``gaea``: a folder made by `gaea data build` (``qa.jsonl`` of `gaea.records.QARecord`, images relative
  to the folder); each record becomes one user turn (image + instruction prefix + question) and one
  assistant turn (the answer).
- ``llava``: a JSON list or JSONL file of ``{"image": ..., "conversations": [{"from", "value"}]}`` with
  ``<image>`` placeholders (LLaVA and GAEA-Train layout).
- ``messages``: a JSONL file of ``{"messages": [{"role", "content"}], "images": [...]}`` (content a string
  with ``<image>`` placeholders or a list of ``text`` / ``image`` parts).
- ``hf``: a Hugging Face dataset (hub id or ``save_to_disk`` folder) in the GAEA-Train layout, images in
  an image column.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from gaea.errors import BadInputError
from gaea.io import read_jsonl
from gaea.models.hub import prepare_hub_dataset
from gaea.records import QARecord, read_records

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
LETTERS = "ABCDEFGHIJ"
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Sample:
    """One training conversation.

    `messages` is in the Hugging Face chat format with ``{"type": "image"}`` parts where images go;
    `images` holds, in order, a path or a PIL image for each of those parts.
    """

    id: str
    messages: list[dict[str, Any]]
    images: list[str | Image.Image] = field(default_factory=list)


class SampleDataset(Dataset):
    """A map-style dataset that turns raw rows into `Sample`s when they are read."""

    def __init__(self, rows: Sequence[Any], convert: Callable[[Any, int], Sample]):
        self.rows = rows
        self.convert = convert

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        return self.convert(self.rows[index], index)


def detect_format(path: str | Path) -> str:
    """The layout of `path`: a `gaea data build` folder, a `save_to_disk` dataset, an export file, or a hub id."""
    path = Path(path)
    if path.is_dir():
        if (path / "qa.jsonl").exists():
            return "gaea"
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        raise BadInputError(f"{path}: a folder without qa.jsonl (from `gaea data build`) nor a saved HF dataset")
    if path.is_file():
        first = _first_record(path)
        if "conversations" in first:
            return "llava"
        if "messages" in first:
            return "messages"
        if "question_type" in first:
            return "gaea"
        raise BadInputError(f"{path}: records have neither 'conversations', 'messages' nor QA fields")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)):
        return "hf"
    raise BadInputError(f"{path}: no such file or folder")


def _first_record(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        data = _load_json(path)
        return data[0] if data else {}
    return next(iter(read_jsonl(path)), {})


def _load_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise BadInputError(f"{path}: expected a JSON list of records")
    return data


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return _load_json(path) if path.suffix == ".json" else list(read_jsonl(path))


def load_samples(
    source: str | Path,
    *,
    data_format: str = "auto",
    image_root: str | Path | None = None,
    instruction_prefixes: dict[str, str] | None = None,
    system_prompt: str | None = None,
    hf_split: str = "train",
    hf_image_column: str = "image",
    max_samples: int | None = None,
) -> SampleDataset:
    """All training samples of `source` in any accepted layout (see the module docstring).

    Raises
    ------
    BadInputError
        When `source` is missing, has an unknown layout, a record is malformed, or an image file is missing.
    """
    fmt = detect_format(source) if data_format == "auto" else data_format
    prefixes = instruction_prefixes or {}
    if fmt == "hf":
        rows = _load_hf(str(source), split=hf_split)
        if max_samples is not None:
            rows = rows.select(range(min(max_samples, len(rows))))
        return SampleDataset(rows, lambda row, i: _hf_sample(row, i, hf_image_column, prefixes, system_prompt))
    path = Path(source)
    root = Path(image_root) if image_root else (path if path.is_dir() else path.parent)
    if fmt == "gaea":
        rows = list(read_records(path))[:max_samples]
        _check_images(root, [row.image for row in rows], source=path)
        return SampleDataset(
            rows, lambda rec, i: record_sample(rec, str(_resolve(root, rec.image)) if rec.image else None, prefixes,
                                               system_prompt)
        )
    if not path.is_file():
        raise BadInputError(f"{path}: no such {fmt} export file")
    rows = _read_rows(path)[:max_samples]
    convert = _conversation_sample if fmt == "llava" else _messages_sample
    samples = [convert(row, i, "image", root, system_prompt) for i, row in enumerate(rows)]
    _check_images(root, [img for s in samples for img in s.images if isinstance(img, str)], source=path)
    return SampleDataset(samples, lambda sample, i: sample)


def _load_hf(name: str, *, split: str) -> Any:
    import datasets

    try:
        if Path(name).is_dir():
            loaded = datasets.load_from_disk(name)
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        prepare_hub_dataset(name)
        return datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise BadInputError(f"{name}: cannot load the Hugging Face dataset split {split!r} ({error})") from error


def _check_images(root: Path, images: list[str], *, source: Path) -> None:
    missing = [image for image in images if image and not _resolve(root, image).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BadInputError(f"{source}: {len(missing)} image file(s) not found under {root}: {shown}")


def _resolve(root: Path | None, image: str) -> Path:
    path = Path(image)
    return path if path.is_absolute() or root is None else root / path


def record_sample(
    record: QARecord, image: str | Image.Image | None, prefixes: dict[str, str], system_prompt: str | None
) -> Sample:
    """A one-question conversation from a QA record: image, instruction prefix, question and options.

    MCQ options become lettered lines and the answer "B. <option>", as `gaea data export` writes them.
    """
    question, answer = record.question, record.answer
    if record.options and answer in record.options:
        question = "\n".join([question, *(f"{LETTERS[i]}. {option}" for i, option in enumerate(record.options))])
        answer = f"{LETTERS[record.options.index(answer)]}. {answer}"
    prefix = prefixes.get(record.question_type, "")
    text = f"{prefix}\n{question}" if prefix else question
    user: list[dict[str, Any]] = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    messages = _with_system(system_prompt) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    return Sample(record.id, messages, [image] if image else [])


def _with_system(system_prompt: str | None) -> list[dict[str, Any]]:
    return [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []


def _hf_sample(
    row: dict[str, Any], index: int, image_column: str, prefixes: dict[str, str], system_prompt: str | None
) -> Sample:
    """A hub / saved dataset row: GAEA-Train conversations, or QA-record fields as `gaea data build` saves them."""
    if "conversations" in row:
        return _conversation_sample(row, index, image_column, None, system_prompt)
    if "question_type" in row:
        record = QARecord.from_dict({**row, "image": "", "evidence": []})
        image = row.get(image_column)
        return record_sample(record, _image_reference(image, None) if image else None, prefixes, system_prompt)
    raise BadInputError(f"dataset row {index}: neither 'conversations' nor QA fields (question, answer, question_type)")


def _conversation_sample(
    row: dict[str, Any], index: int, image_column: str, root: Path | None, system_prompt: str | None
) -> Sample:
    """A sample from the LLaVA / GAEA-Train layout: `conversations` of `from` / `value` with `<image>`."""
    sample_id = str(row.get("id", index))
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise BadInputError(f"record {sample_id!r}: 'conversations' must be a non-empty list")
    images = _as_list(row.get(image_column))
    messages = _with_system(system_prompt)
    for turn in turns:
        role = _ROLES.get(str(turn.get("from", turn.get("role", ""))))
        if role is None:
            raise BadInputError(f"record {sample_id!r}: unknown speaker {turn.get('from')!r}")
        messages.append({"role": role, "content": _parts_from_text(str(turn.get("value", "")))})
    return _finish(sample_id, messages, images, root)


def _messages_sample(
    row: dict[str, Any], index: int, image_column: str, root: Path | None, system_prompt: str | None
) -> Sample:
    """A sample from the `messages` layout: OpenAI / HF-style roles, string or list content."""
    sample_id = str(row.get("id", index))
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        raise BadInputError(f"record {sample_id!r}: 'messages' must be a non-empty list")
    images = _as_list(row.get("images", row.get(image_column)))
    has_system = any(turn.get("role") == "system" for turn in turns)
    messages = [] if has_system else _with_system(system_prompt)
    for turn in turns:
        role = _ROLES.get(str(turn.get("role", "")))
        if role is None:
            raise BadInputError(f"record {sample_id!r}: unknown role {turn.get('role')!r}")
        content = turn.get("content")
        if isinstance(content, str):
            parts = _parts_from_text(content)
        else:
            parts, inline = _parts_from_list(content, sample_id)
            images.extend(inline)
        messages.append({"role": role, "content": parts})
    return _finish(sample_id, messages, images, root)


def _parts_from_list(content: Any, sample_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
    if not isinstance(content, list):
        raise BadInputError(f"record {sample_id!r}: message content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    inline: list[Any] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind in ("image", "image_url"):
            parts.append({"type": "image"})
            source = part.get("image") or part.get("path") or (part.get("image_url") or {}).get("url")
            if source is not None:
                inline.append(source)
        else:
            raise BadInputError(f"record {sample_id!r}: unknown content part type {kind!r}")
    return parts, inline


def _parts_from_text(text: str) -> list[dict[str, Any]]:
    """Text with `<image>` placeholders as parts; the newline that usually follows a placeholder goes with it."""
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if i > 0:
            parts.append({"type": "image"})
            piece = piece.removeprefix("\n")
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _finish(sample_id: str, messages: list[dict[str, Any]], images: list[Any], root: Path | None) -> Sample:
    wanted = sum(part.get("type") == "image" for message in messages for part in message["content"])
    if wanted != len(images):
        raise BadInputError(f"record {sample_id!r}: {wanted} image placeholder(s) but {len(images)} image(s)")
    if not any(message["role"] == "assistant" for message in messages):
        raise BadInputError(f"record {sample_id!r}: no assistant turn to learn from")
    resolved = [_image_reference(image, root) for image in images]
    return Sample(sample_id, messages, resolved)


def _image_reference(image: Any, root: Path | None) -> str | Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # datasets' undecoded Image feature
        if image.get("bytes"):
            import io

            return Image.open(io.BytesIO(image["bytes"]))
        image = image.get("path", "")
    return str(_resolve(root, str(image)))


def split_train_eval(dataset: SampleDataset, *, eval_ratio: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A held-out evaluation split, the same for the same seed (at least one sample when the ratio is positive)."""
    from torch.utils.data import Subset

    if eval_ratio <= 0:
        return dataset, None
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(order) * eval_ratio))
    if n_eval >= len(order):
        raise BadInputError(f"eval_ratio {eval_ratio} leaves no training sample out of {len(order)}")
    return Subset(dataset, sorted(order[n_eval:])), Subset(dataset, sorted(order[:n_eval]))
