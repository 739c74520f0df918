"""The collator puts the loss on answer tokens only: prompt, image and padding positions get -100."""

from __future__ import annotations

import pytest
import torch

from finetune.collator import IGNORE_INDEX, VisionChatCollator, expand_to_image_runs
from finetune.data import Sample
from gaea.errors import BadInputError, ConfigError
from gaea.models.vlm import load_processor

FIRST_ANSWERS = ["Arezzo, Italy.", "Yes, about 350 m to the north-east."]


def _text(content: str) -> dict:
    return {"type": "text", "text": content}


@pytest.fixture(scope="module")
def processor(tiny_vlm):
    return load_processor(tiny_vlm)


@pytest.fixture(scope="module")
def samples(photos_dir):
    multi_turn = Sample(
        "multi",
        [
            {"role": "system", "content": [_text("You locate photos.")]},
            {"role": "user", "content": [{"type": "image"}, _text("Where was this photo taken?")]},
            {"role": "assistant", "content": [_text(FIRST_ANSWERS[0])]},
            {"role": "user", "content": [_text("Which country is that?")]},
            {"role": "assistant", "content": [_text("Italy")]},
            {"role": "user", "content": [{"type": "image"}, _text("And this one, same place?")]},
            {"role": "assistant", "content": [_text("No")]},
        ],
        [str(photos_dir / "DSCN0010.jpg"), str(photos_dir / "Kodak_CX7530.jpg")],
    )
    single = Sample(
        "single",
        [
            {"role": "user", "content": [{"type": "image"}, _text("Is there a train station nearby?")]},
            {"role": "assistant", "content": [_text(FIRST_ANSWERS[1])]},
        ],
        [str(photos_dir / "DSCN0021.jpg")],
    )
    return [multi_turn, single]


def _expected_answer_positions(tokens: list[str], attention: list[int]) -> list[bool]:
    """Walk the decoded tokens independently of the collator: answers run from `<|im_start|>assistant\\n`
    to their `<|im_end|>` inclusive; everything else (and padding) is not an answer."""
    expected, in_answer, header = [], False, ""
    for token, attended in zip(tokens, attention, strict=True):
        if not attended:
            expected.append(False)
            continue
        if token == "<|im_start|>":
            header, in_answer = "<|im_start|>", False
            expected.append(False)
            continue
        if header:
            header += token
            expected.append(False)
            if header.endswith("Ċ"):  # the newline that ends the role line
                in_answer = header == "<|im_start|>assistantĊ"
                header = ""
            continue
        expected.append(in_answer)
        if token == "<|im_end|>":
            in_answer = False
    return expected


def test_labels_are_minus_100_exactly_outside_answers(processor, samples):
    batch = VisionChatCollator(processor, max_length=4096)(samples)
    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape and ids.shape[0] == 2
    assert attention[1].sum() < attention[0].sum()  # the short sample is padded
    image_token = processor.image_token_id
    for row in range(2):
        tokens = processor.tokenizer.convert_ids_to_tokens(ids[row].tolist())
        expected = _expected_answer_positions(tokens, attention[row].tolist())
        for position, (token, is_answer) in enumerate(zip(tokens, expected, strict=True)):
            label = int(labels[row, position])
            if is_answer:
                assert label == int(ids[row, position]), f"row {row} token {position} {token!r} should be learned"
            else:
                assert label == IGNORE_INDEX, f"row {row} token {position} {token!r} should be masked"
        assert (labels[row][ids[row] == image_token] == IGNORE_INDEX).all()
        assert (labels[row][attention[row] == 0] == IGNORE_INDEX).all()
    learned = [processor.tokenizer.decode(labels[row][labels[row] != IGNORE_INDEX]) for row in range(2)]
    assert learned[0] == "Arezzo, Italy.<|im_end|>Italy<|im_end|>No<|im_end|>"
    assert learned[1] == FIRST_ANSWERS[1] + "<|im_end|>"
    assert (ids == image_token).sum() == batch["image_grid_thw"].prod(-1).sum() // 4  # every image token kept


def test_long_samples_are_cut_after_max_length_text_tokens(processor, samples):
    image_token = processor.image_token_id
    full = VisionChatCollator(processor, max_length=4096)(samples)
    text_tokens = ((full["input_ids"] != image_token) & full["attention_mask"].bool()).sum(dim=1)
    limit = int(text_tokens[0]) - 5  # cuts the end of the long sample's last answer only
    cut = VisionChatCollator(processor, max_length=limit)(samples)
    lengths = cut["attention_mask"].sum(dim=1)
    assert int(lengths[0]) == int(full["attention_mask"][0].sum()) - 5
    assert int(lengths[1]) == int(full["attention_mask"][1].sum())  # already short enough
    assert cut["input_ids"].shape[1] == int(lengths.max())
    kept = int(lengths[0])
    assert torch.equal(cut["labels"][0, :kept], full["labels"][0, :kept])
    assert torch.equal(cut["input_ids"][0, :kept], full["input_ids"][0, :kept])
    assert torch.equal(cut["pixel_values"], full["pixel_values"])  # images are never cut
    assert ((cut["input_ids"] != image_token) & cut["attention_mask"].bool()).sum(dim=1).max() <= limit


def test_samples_whose_text_before_an_image_is_too_long_are_dropped(processor, samples):
    single = samples[1]
    first_image = int((VisionChatCollator(processor)([single])["input_ids"][0] == processor.image_token_id)
                      .nonzero().min())
    collator = VisionChatCollator(processor, max_length=first_image - 1)
    with pytest.raises(BadInputError, match="no sample of the batch fits"):
        collator([single])
    text_only = Sample("text", [{"role": "user", "content": [_text("Hi")]},
                                {"role": "assistant", "content": [_text("Hello")]}])
    batch = collator([single, text_only])
    assert batch["input_ids"].shape[0] == 1 and "pixel_values" not in batch


def test_a_missing_image_file_is_named(processor, tmp_path):
    sample = Sample("gone", [{"role": "user", "content": [{"type": "image"}, _text("Where?")]},
                             {"role": "assistant", "content": [_text("Here")]}], [str(tmp_path / "gone.jpg")])
    with pytest.raises(BadInputError, match="gone.jpg: no such file"):
        VisionChatCollator(processor)([sample])


def test_image_runs_alignment_refuses_foreign_tokens():
    assert expand_to_image_runs([False, True, True], [1, 9, 2], [1, 9, 9, 9, 2], 9) == [False] * 4 + [True]
    with pytest.raises(ConfigError, match="differ"):
        expand_to_image_runs([False, True], [1, 2], [1, 3], 9)
