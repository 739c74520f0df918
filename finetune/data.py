"""Training samples from any dataset source of `gaea.sources`, as chat conversations with their images.

Each row is read in the layout it has:

- ``gaea``: a QA record (`gaea.records.QARecord`, as `gaea data build` writes them in ``qa.jsonl`` and its
  ``hf/`` copy); it becomes one user turn (image + the prompt of `gaea.records.render`: question, lettered
  options, instruction) and one assistant turn (its target).
- ``llava``: ``{"image": ..., "conversations": [{"from", "value"}]}`` with ``<image>`` placeholders
  (LLaVA and GAEA-Train layout), in a JSON list, a JSONL file or a dataset with an image column.
- ``messages``: ``{"messages": [{"role", "content"}], "images": [...]}`` (content a string with
  ``<image>`` placeholders or a list of ``text`` / ``image`` parts).

A row that is none of these, or is malformed, or names an image file that is not there, is left out with
a warning that says where and why; a source with no usable row is an error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from gaea.errors import BadInputError
from gaea.images import load_image
from gaea.records import QARecord, render
from gaea.sources import ImageRef, Row, Skipped, open_source

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"
LAYOUTS = ("auto", "gaea", "llava", "messages")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

#: An image of a sample: a file path, a decoded picture, or a dataset's picture decoded when it is used.
SampleImage = str | Image.Image | ImageRef


@dataclass
class Sample:
    """One training conversation.

    `messages` is in the Hugging Face chat format with ``{"type": "image"}`` parts where images go;
    `images` holds, in order, an image for each of those parts.
    """

    id: str
    messages: list[dict[str, Any]]
    images: list[SampleImage] = field(default_factory=list)


class SampleDataset(Dataset):
    """The samples of a source, in order (their dataset pictures are decoded only when used)."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def layout_of(fields: dict[str, Any]) -> str | None:
    """The layout of one row: llava, messages, gaea (a QA record), or None."""
    if "conversations" in fields:
        return "llava"
    if "messages" in fields:
        return "messages"
    if "question_type" in fields:
        return "gaea"
    return None


def load_samples(
    source: str | Path,
    *,
    data_format: str = "auto",
    image_root: str | Path | None = None,
    system_prompt: str | None = None,
    max_samples: int | None = None,
) -> SampleDataset:
    """The training samples of `source` (any spec of `gaea.sources`; see the module docstring).

    `data_format` other than ``auto`` keeps only rows of that layout; `image_root` is the folder that
    relative image paths start from (default: the source's own folder).

    Raises
    ------
    BadInputError
        When `source` cannot be opened or holds no usable sample.
    """
    if data_format not in LAYOUTS:
        raise BadInputError(f"data_format {data_format!r}: choose one of {', '.join(LAYOUTS)}")
    opened = open_source(source)
    root = Path(image_root) if image_root else opened.base
    samples: list[Sample] = []
    left_out: list[str] = []
    for index, row in enumerate(opened.rows()):
        if max_samples is not None and len(samples) >= max_samples:
            break
        try:
            samples.append(_sample_of(row, index, root, data_format, system_prompt))
        except BadInputError as error:
            left_out.append(str(error))
            log.warning("left out %s", error)
    if left_out:
        log.warning("%d rows of %s were left out (the warnings above say why)", len(left_out), source)
    if not samples:
        first = f"; the first: {left_out[0]}" if left_out else ""
        raise BadInputError(f"{source}: no training sample ({len(left_out)} rows left out{first})")
    return SampleDataset(samples)


def _sample_of(row: Row | Skipped, index: int, root: Path | None, data_format: str,
               system_prompt: str | None) -> Sample:
    """The sample of one row; a BadInputError says where the row is and what is wrong with it."""
    if isinstance(row, Skipped):
        raise BadInputError(row.detail)
    layout = layout_of(row.fields)
    try:
        if layout is None or data_format not in ("auto", layout):
            wanted = "neither conversations, messages nor QA fields" if layout is None else f"a {layout} row"
            raise BadInputError(wanted if data_format == "auto" else f"{wanted}, not {data_format}")
        if layout == "gaea":
            record = QARecord.from_dict({**row.fields, "image": row.photo})
            sample = record_sample(record, _record_image(row, root), system_prompt)
        else:
            sample = _conversation_sample(row, index, layout, root, system_prompt)
        _check_files(sample)
    except BadInputError as error:
        raise BadInputError(f"{row.where}: {error}") from error
    return sample


def _record_image(row: Row, root: Path | None) -> SampleImage | None:
    """A QA record's image: the row's picture in a dataset, else the file its `image` path names."""
    if row.image is not None and row.image.path is None:
        return row.image
    value = row.fields.get("image")
    return _file(value, root) if isinstance(value, str) and value else None


def _check_files(sample: Sample) -> None:
    missing = [image for image in sample.images if isinstance(image, str) and not Path(image).is_file()]
    if missing:
        raise BadInputError(f"image file {missing[0]} not found")


def record_sample(record: QARecord, image: SampleImage | None, system_prompt: str | None) -> Sample:
    """A one-question conversation from a QA record: the image and the user turn and target of
    `gaea.records.render`, the same text `gaea data export` writes and `gaea eval bench` asks."""
    rendered = render(record)
    user: list[dict[str, Any]] = ([{"type": "image"}] if image else []) + [{"type": "text", "text": rendered.prompt}]
    messages = _with_system(system_prompt) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": rendered.target}]},
    ]
    return Sample(record.id, messages, [image] if image else [])


def _with_system(system_prompt: str | None) -> list[dict[str, Any]]:
    return [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []


def _conversation_sample(row: Row, index: int, layout: str, root: Path | None, system_prompt: str | None) -> Sample:
    """A sample from the LLaVA / GAEA-Train layout (`conversations` of `from` / `value` with `<image>`) or
    the `messages` layout (OpenAI / HF-style roles, string or list content)."""
    fields = row.fields
    sample_id = str(fields.get("id", index))
    turns = fields.get("conversations" if layout == "llava" else "messages")
    if not isinstance(turns, list) or not turns or not all(isinstance(turn, dict) for turn in turns):
        raise BadInputError(f"record {sample_id!r}: {layout!r} must be a non-empty list of turns")
    if row.image is not None and row.image.path is None:
        images: list[Any] = [row.image]
    else:
        images = _as_list(fields.get("image") if layout == "llava" else fields.get("images", fields.get("image")))
    has_system = layout == "messages" and any(turn.get("role") == "system" for turn in turns)
    messages = [] if has_system else _with_system(system_prompt)
    for turn in turns:
        speaker = turn.get("from", turn.get("role", "")) if layout == "llava" else turn.get("role", "")
        role = _ROLES.get(str(speaker))
        if role is None:
            raise BadInputError(f"record {sample_id!r}: unknown {'speaker' if layout == 'llava' else 'role'} "
                                f"{speaker!r}")
        content = turn.get("value", "") if layout == "llava" else turn.get("content")
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
    return Sample(sample_id, messages, [_image_value(image, root) for image in images])


def _image_value(image: Any, root: Path | None) -> SampleImage:
    """An image as a row gives it: a dataset's picture or a decoded one stay; a path starts at `root`."""
    if isinstance(image, (Image.Image, ImageRef)):
        return image
    if isinstance(image, dict):  # a picture inside a list column of a dataset, not decoded
        if image.get("bytes"):
            return load_image(image["bytes"])
        image = image.get("path", "")
    return _file(str(image), root)


def _file(value: str, root: Path | None) -> str:
    return value if root is None or Path(value).is_absolute() else str(root / value)


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
