"""Answers that come through `transformers serve` (as `gaea serve` starts it) carry no special tokens: the
Assistant's chat and locate flows through a real server on 127.0.0.1 read like the in-process backend's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gaea import Assistant
from gaea.models.backends import load_backend
from gaea.types import GenerationParams, Message
from tests.servers import transformers_serve

QUESTIONS = ["Where was this photo taken?", "Is there a train station nearby?"]
PARAMS = GenerationParams(max_new_tokens=32)


@pytest.fixture(scope="module")
def served(tiny_vlm: Path) -> Iterator[str]:
    with transformers_serve(tiny_vlm) as base_url:
        yield base_url


def special_tokens(tiny_vlm: Path) -> re.Pattern[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_vlm))
    specials = sorted({token.content for token in tokenizer.added_tokens_decoder.values() if token.special}, key=len)
    assert "<|im_start|>" in specials and "<|vision_end|>" in specials
    return re.compile("|".join(re.escape(token) for token in reversed(specials)))


def conversation_answers(assistant: Assistant, photo: Path) -> list[str]:
    """The (streamed) answers of a chat about `photo`, and Locate's answer."""
    answers: list[str] = []
    history: list[Message] = []
    for question in QUESTIONS:
        answer = "".join(assistant.chat(history, photo, question))
        history += [Message.user(question), Message.assistant(answer)]
        answers.append(answer)
    answers.append(assistant.locate(photo).raw)
    return answers


def test_served_answers_hold_no_special_tokens(served: str, tiny_vlm: Path, photos_dir: Path) -> None:
    backend = load_backend("openai", base_url=served, model=str(tiny_vlm))
    specials = special_tokens(tiny_vlm)
    photo = photos_dir / "DSCN0010.jpg"
    try:
        streamed = conversation_answers(Assistant(backend, params=PARAMS), photo)
        whole = [backend.generate([Message.user(QUESTIONS[0], images=[photo])], params=PARAMS)]
    finally:
        backend.close()
    for answer in streamed + whole:
        assert answer.strip(), "the tiny model always says something"
        assert not specials.search(answer), f"special token in a served answer: {answer!r}"


def test_served_and_in_process_answers_are_the_same_text(served: str, tiny_vlm: Path, photos_dir: Path) -> None:
    # greedy decoding of one model: the server and the in-process backend (skip_special_tokens) agree
    photo = photos_dir / "DSCN0010.jpg"
    messages = [Message.user(QUESTIONS[0], images=[photo])]
    backend = load_backend("openai", base_url=served, model=str(tiny_vlm))
    try:
        served_answer = backend.generate(messages, params=PARAMS)
        served_stream = "".join(backend.stream(messages, params=PARAMS))
    finally:
        backend.close()
    local = load_backend("transformers", model=str(tiny_vlm), device="cpu").generate(messages, params=PARAMS)
    assert whole_characters(served_answer) == whole_characters(local) == whole_characters(served_stream)


def whole_characters(answer: str) -> str:
    # The token limit may cut a character after its first byte; decoders differ on showing that as U+FFFD.
    return answer.strip().rstrip("\ufffd").rstrip()
