"""Every answer of an OpenAI-compatible server ends: real SSE servers on 127.0.0.1 that trickle, send
keep-alives forever, never stop, break off, stall, or send terminal escape sequences.

Each case failed before the limits existed: the trickle and the keep-alives were never given up on, the
endless stream came back whole (megabytes for a few tokens asked), a cut stream was a complete answer,
a stall was retried on every retry, and escapes reached the terminal."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gaea.cli import main as gaea_main
from gaea.controls import ControlStripper, strip_controls
from gaea.errors import BackendError, BackendUnreachableError
from gaea.models.backends import openai_compat
from gaea.models.backends.openai_compat import OpenAIBackend
from gaea.retry import RETRYABLE_STATUSES, retry_after_s
from gaea.settings import get_settings
from gaea.types import GenerationParams, Message
from tests.servers import Reply, scripted_http_server, sse

QUESTION = [Message.user("Where was this photo taken?")]
SSE_HEADERS = {"Content-Type": "text/event-stream"}
#: What the endless server stops at (so that a client without a cap ends, with far too much).
ENDLESS_BYTES = 3_000_000


def chunk(text: str, finish_reason: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}]})


def events(*texts: str, done: bool = True) -> str:
    return sse(*(chunk(text) for text in texts), *(["[DONE]"] if done else []))


def streamed(make: Callable[[], Iterator[bytes]]) -> Reply:
    return Reply(200, headers=SSE_HEADERS, stream=make)


def trickle() -> Iterator[bytes]:
    for index in range(600):  # a minute at this pace: no test waits that long when the deadline holds
        yield f"data: {chunk(f'w{index} ')}\n\n".encode()
        time.sleep(0.1)


def keep_alives() -> Iterator[bytes]:
    yield f"data: {chunk('')}\n\n".encode()  # the role chunk: the stream is open, nothing said yet
    for _ in range(600):
        yield b": keep-alive\n\n"
        time.sleep(0.1)


def endless() -> Iterator[bytes]:
    piece = f"data: {chunk('word ')}\n\n".encode()
    for _ in range(ENDLESS_BYTES // len(piece)):
        yield piece


def cut_after(*texts: str) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([events(*texts, done=False).encode()])


def client(server, **options) -> OpenAIBackend:
    return OpenAIBackend(server.base_url, model="m", **{"retries": 0, **options})


# ----------------------------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("reply", "expect_pieces"),
    [(streamed(trickle), True), (streamed(keep_alives), False)],
    ids=["trickle", "keep-alives-forever"],
)
def test_an_answer_that_never_finishes_ends_at_its_deadline(reply: Reply, expect_pieces: bool) -> None:
    shown: list[str] = []
    with scripted_http_server([reply]) as server:
        backend = client(server, timeout_s=5.0, deadline_s=1.0, retries=3)
        with pytest.raises(BackendError, match=r"did not finish its answer within 1 s.*--deadline"):
            for piece in backend.stream(QUESTION):
                shown.append(piece)
    assert bool(shown) == expect_pieces
    assert len(server.requests) == 1  # the deadline is spent: no retry


def test_generate_has_the_same_deadline() -> None:
    with scripted_http_server([streamed(keep_alives)]) as server:
        with pytest.raises(BackendError, match="did not finish its answer within 1 s"):
            client(server, timeout_s=5.0, deadline_s=1.0).generate(QUESTION)


# ----------------------------------------------------------------------------------------------- caps


@pytest.mark.parametrize("call", ["stream", "generate"])
def test_an_endless_stream_is_cut_at_about_the_tokens_asked(call: str) -> None:
    params = GenerationParams(max_new_tokens=16)
    with scripted_http_server([streamed(endless)]) as server:
        backend = client(server)
        answer = "".join(backend.stream(QUESTION, params=params)) if call == "stream" else backend.generate(
            QUESTION, params=params
        )
    words = answer.split()
    assert 16 <= len(words) <= 16 + openai_compat.EXTRA_PIECES
    assert len(answer.encode()) <= 16 * openai_compat.TEXT_BYTES_PER_TOKEN


def test_a_huge_json_answer_is_refused_not_read_whole() -> None:
    huge = json.dumps({"choices": [{"message": {"content": "x" * ENDLESS_BYTES}}]})
    with scripted_http_server([Reply(200, huge, {"Content-Type": "application/json"})]) as server:
        with pytest.raises(BackendError, match=r"sent more than [\d,]+ bytes for an answer of at most 16 tokens"):
            client(server).generate(QUESTION, params=GenerationParams(max_new_tokens=16))


# ----------------------------------------------------------------------------------------------- cut streams


def test_a_stream_cut_after_pieces_were_shown_is_an_error() -> None:
    shown: list[str] = []
    with scripted_http_server([streamed(cut_after("Are", "zzo"))]) as server:
        with pytest.raises(BackendError, match=r"broke off its answer \(the stream ended before data: \[DONE\]\)"):
            for piece in client(server, retries=3).stream(QUESTION):
                shown.append(piece)
    assert shown == ["Are", "zzo"]
    assert len(server.requests) == 1  # a retry would repeat what was shown


def test_a_stream_cut_before_anything_was_shown_is_retried() -> None:
    replies = [streamed(cut_after("")), Reply(200, events("Are", "zzo"), SSE_HEADERS)]
    with scripted_http_server(replies) as server:
        assert list(client(server, retries=2).stream(QUESTION)) == ["Are", "zzo"]
    assert len(server.requests) == 2


def test_generate_retries_a_cut_stream_whole_then_gives_up() -> None:
    with scripted_http_server([streamed(cut_after("Are", "zzo"))]) as server:
        with pytest.raises(BackendError, match=r"broke off its answer .*\(3 tries\)"):
            client(server, retries=2).generate(QUESTION)
    assert len(server.requests) == 3


def test_a_finish_reason_ends_a_stream_without_done() -> None:
    # `transformers serve` ends its streams this way: complete, though no [DONE] follows.
    body = sse(chunk("Arezzo"), chunk("", finish_reason="stop"))
    with scripted_http_server([Reply(200, body, SSE_HEADERS)]) as server:
        assert client(server).generate(QUESTION) == "Arezzo"


def test_gaea_ask_on_a_cut_stream_fails_with_exit_2(tmp_path: Path, photos_dir: Path, capsys) -> None:
    with scripted_http_server([streamed(cut_after("Are", "zzo"))]) as server:
        code = gaea_main(["ask", "--base-url", server.base_url, "--served-model", "m", "--image",
                          str(photos_dir / "DSCN0010.jpg"), "--stream", "Where?"])
    assert code == 2
    assert "broke off its answer" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- stalls


def test_a_stalled_server_is_tried_twice_whatever_the_retries() -> None:
    with scripted_http_server([Reply(200, events("late"), SSE_HEADERS, delay_s=3.0)]) as server:
        backend = client(server, timeout_s=0.4, retries=4)
        with pytest.raises(BackendUnreachableError, match=r"did not answer in time \(2 tries of 0.4 s"):
            backend.generate(QUESTION)
    assert len(server.requests) == 1 + openai_compat.TIMEOUT_RETRIES == 2


def test_default_timeouts_fail_a_stalled_server_well_under_a_minute(monkeypatch) -> None:
    for name in ("GAEA_HTTP_TIMEOUT", "GAEA_ANSWER_DEADLINE", "GAEA_HTTP_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings()
    # Worst case: every try waits the whole silence, and the backoff between two tries is at most 1 s.
    worst_s = (1 + openai_compat.TIMEOUT_RETRIES) * settings.http_timeout_s + openai_compat.TIMEOUT_RETRIES * 1.0
    assert worst_s <= 45
    assert settings.answer_deadline_s >= 60  # while a long answer that keeps coming may take minutes


# ----------------------------------------------------------------------------------------------- escapes


def test_terminal_escapes_are_stripped_even_across_pieces() -> None:
    pieces = ["\x1b[2J\x1b[3", "1mRome\x1b[0m", " \x1b]8;;http://evil.example/\x07link\x1b]8;;\x07", "\r!\x9b31m"]
    with scripted_http_server([Reply(200, events(*pieces), SSE_HEADERS)]) as server:
        backend = client(server)
        streamed_text = "".join(backend.stream(QUESTION))
        whole = backend.generate(QUESTION)
    assert streamed_text == whole == "Rome link!"


def test_escapes_in_a_server_error_do_not_reach_the_message() -> None:
    body = json.dumps({"error": {"message": "bad \x1b[31mthing\x1b[0m\x07"}})
    with scripted_http_server([Reply(400, body)]) as server:
        with pytest.raises(BackendError) as error:
            client(server).generate(QUESTION)
    assert "bad thing" in str(error.value) and "\x1b" not in str(error.value)


def test_gaea_ask_prints_no_escape_sequence(photos_dir: Path, capsys) -> None:
    reply = Reply(200, events("\x1b]0;pwned\x07Arezzo", "\x1b[1A\x1b[2K, Italy"), SSE_HEADERS)
    with scripted_http_server([reply]) as server:
        code = gaea_main(["ask", "--base-url", server.base_url, "--served-model", "m", "--image",
                          str(photos_dir / "DSCN0010.jpg"), "--stream", "Where?"])
    out = capsys.readouterr().out
    assert code == 0 and out.strip() == "Arezzo, Italy"


# ----------------------------------------------------------------------------------------------- retry rules


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("0", 0.0), ("-5", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
    ids=["seconds", "zero", "negative", "http-date", "garbage", "absent"],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 GMT
    assert retry_after_s(header, now=now) == expected


def test_one_set_of_retryable_statuses() -> None:
    assert RETRYABLE_STATUSES == {429, 500, 502, 503, 504}


def test_an_http_date_retry_after_is_honoured(caplog) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    replies = [Reply(503, "busy", {"Retry-After": when}), Reply(200, events("ok"), SSE_HEADERS)]
    with scripted_http_server(replies) as server, caplog.at_level(logging.WARNING, logger="gaea.retry"):
        assert client(server, retries=1).generate(QUESTION) == "ok"
    waits = [float(m) for m in re.findall(r"retrying in ([\d.]+) s", caplog.text)]
    assert len(waits) == 1 and 1.5 <= waits[0] <= 3.0  # not the 0.5-1 s backoff of a first retry


def test_an_answer_within_its_caps_comes_back_whole() -> None:
    texts = [f"w{i} " for i in range(40)]
    with scripted_http_server([Reply(200, events(*texts), SSE_HEADERS)]) as server:
        answer = client(server).generate(QUESTION, params=GenerationParams(max_new_tokens=64))
    assert answer == "".join(texts)


@pytest.mark.parametrize(
    "text",
    ["plain\ttext\nover lines", "\x1b[1;31mred\x1b[0m", "a\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\b", "x\r\ny\rz",
     "\x9b2Jc1\x85", "bell\x07 and \x1bc reset"],
    ids=["plain", "sgr", "osc-hyperlink", "carriage-returns", "8-bit", "bell-and-reset"],
)
def test_stripping_a_stream_cut_anywhere_equals_stripping_it_whole(text: str) -> None:
    whole = strip_controls(text)
    assert "\x1b" not in whole and "\r" not in whole
    for cut in range(len(text) + 1):
        stripper = ControlStripper()
        assert stripper.feed(text[:cut]) + stripper.feed(text[cut:]) + stripper.flush() == whole
