"""Batches for supervised fine-tuning with the loss on answer tokens only.

No per-model token ids: the collator renders each conversation with the processor's own chat
template, finds where every assistant answer lies by rendering the conversation up to that turn
(with and without the answer) and diffing the texts, marks those characters' tokens as answer
tokens, and then lines the text tokens up with the processor's output, where each image placeholder
has grown into a run of image tokens. Everything else (system and user turns, the generation prompt,
image and padding tokens) gets label -100.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from finetune.data import Sample, SampleImage
from gaea.errors import BadInputError, ConfigError
from gaea.images import load_image
from gaea.sources import ImageRef

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


class VisionChatCollator:
    """Turns `Sample`s into model inputs with `labels` (-100 outside assistant answers).

    Parameters
    ----------
    processor
        The model's processor (tokenizer + image processor + chat template).
    max_length
        Most text tokens per sample; longer samples are cut at the end. Image tokens do not count (their
        number is bounded by the image processor's max_pixels), so a cut never splits an image; a sample
        whose text before its last image is already too long is dropped from its batch with a warning.
    """

    def __init__(self, processor: Any, *, max_length: int = 1024):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self.image_token_id = _image_token_id(processor)
        if self.tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token; set one before training")

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        rendered = [self.render(sample) for sample in samples]
        texts = [text for text, _ in rendered]
        batch = self._process(texts, [image for sample in samples for image in sample.images])
        answer_masks = [self._answer_token_mask(text, spans) for text, spans in rendered]
        batch["labels"] = self._labels(batch, answer_masks)
        cut = self._cut_text(batch)
        if cut:
            kept = [sample for i, sample in enumerate(samples) if i not in cut]
            log.warning(
                "dropping %d sample(s) with more than max_length=%d text tokens before their last image: %s",
                len(cut), self.max_length, ", ".join(samples[i].id for i in sorted(cut)),
            )
            if not kept:
                raise BadInputError(
                    f"no sample of the batch fits in max_length={self.max_length}: each has more text tokens "
                    "before its last image; raise max_length"
                )
            return self(kept)
        return self._drop_empty_columns(batch)

    def render(self, sample: Sample) -> tuple[str, list[tuple[int, int]]]:
        """The conversation as text, and the character spans of its assistant answers (end-of-turn included)."""
        template = self.processor.apply_chat_template
        full = template(sample.messages, tokenize=False)
        spans = []
        for index, message in enumerate(sample.messages):
            if message["role"] != "assistant":
                continue
            prompt = template(sample.messages[:index], tokenize=False, add_generation_prompt=True)
            through = template(sample.messages[: index + 1], tokenize=False)
            if not (through.startswith(prompt) and full.startswith(through)):
                raise ConfigError(
                    f"sample {sample.id!r}: the chat template does not render turns as a growing prefix, "
                    "so answers cannot be located"
                )
            spans.append((len(prompt), len(through.rstrip())))
        return full, spans

    def _process(self, texts: list[str], images: list[str | Image.Image]) -> dict[str, torch.Tensor]:
        pil = [_as_rgb(image) for image in images]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": "longest", "padding_side": "right"}
        if pil:
            kwargs["images"] = pil
        return dict(self.processor(**kwargs))

    def _answer_token_mask(self, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
        """The template text's token ids (images not yet expanded) and which of them lie inside an answer."""
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        mask = [end > begin and any(start <= begin and end <= stop for start, stop in spans)
                for begin, end in encoding["offset_mapping"]]
        return encoding["input_ids"], mask

    def _labels(self, batch: dict[str, torch.Tensor], answer_masks: list[tuple[list[int], list[bool]]]) -> torch.Tensor:
        """Labels of the right-padded batch: the token id inside answers, -100 elsewhere."""
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (text_ids, mask) in enumerate(answer_masks):
            length = int(attention[row].sum())
            ids = input_ids[row, :length].tolist()
            answer = torch.tensor(expand_to_image_runs(mask, text_ids, ids, self.image_token_id), dtype=torch.bool)
            labels[row, :length] = torch.where(answer, input_ids[row, :length], IGNORE_INDEX)
        return labels

    def _cut_text(self, batch: dict[str, torch.Tensor]) -> set[int]:
        """Cut each row after `max_length` text tokens, in place; return the rows that cut would split an image in."""
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        is_image = input_ids == self.image_token_id
        text_count = torch.cumsum((~is_image & attention.bool()).long(), dim=1)
        split: set[int] = set()
        for row in range(input_ids.shape[0]):
            beyond = (text_count[row] > self.max_length).nonzero()
            if not len(beyond):
                continue
            start = int(beyond[0])
            if is_image[row, start:].any():
                split.add(row)
            input_ids[row, start:] = self.tokenizer.pad_token_id
            attention[row, start:] = 0
            batch["labels"][row, start:] = IGNORE_INDEX
            if "mm_token_type_ids" in batch:
                batch["mm_token_type_ids"][row, start:] = 0
        return split

    def _drop_empty_columns(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch without the trailing columns that are padding in every row."""
        shape = batch["input_ids"].shape
        width = int(batch["attention_mask"].sum(dim=1).max())
        if width == shape[1]:
            return batch
        return {key: value[:, :width] if value.dim() >= 2 and value.shape[:2] == shape else value
                for key, value in batch.items()}


def expand_to_image_runs(mask: list[bool], text_ids: list[int], ids: list[int], image_token_id: int) -> list[bool]:
    """`mask` over the template's tokens carried onto the processor's tokens, where each image token became a run.

    Raises
    ------
    ConfigError
        When the two token sequences differ other than by image runs (a processor this collator cannot read).
    """
    out: list[bool] = []
    j = 0
    i = 0
    while i < len(ids):
        if j >= len(text_ids) or (ids[i] != text_ids[j]):
            raise ConfigError(
                f"the processor's tokens differ from the chat template's at position {i}: "
                "the collator cannot locate the answers for this model"
            )
        if ids[i] == image_token_id:
            while i < len(ids) and ids[i] == image_token_id:
                out.append(False)
                i += 1
        else:
            out.append(mask[j])
            i += 1
        j += 1
    if j != len(text_ids):
        raise ConfigError("the processor's output is shorter than the chat template's text")
    return out


def _image_token_id(processor: Any) -> int | None:
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None and getattr(processor, "image_token", None):
        token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return token_id


def _as_rgb(image: SampleImage) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, ImageRef):
        return image.load(name="a picture of the training data")
    return load_image(image)
