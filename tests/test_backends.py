"""Model backends on real components: the tiny Qwen2.5-VL model in process, the same model behind a real
`transformers serve`, and a real scripted HTTP server for the failure cases (garbage, 4xx, 5xx, timeouts)."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from gaea.errors import BackendError, BackendUnreachableError, BadInputError, ConfigError
from gaea.models.backends import Backend, load_backend
from gaea.models.backends.openai_compat import OpenAIBackend
from gaea.models.backends.transformers_backend import TransformersBackend
from gaea.types import GenerationParams, ImagePart, Message
from tests.servers import Reply, free_port, scripted_http_server, transformers_serve

QUESTION = "Where was this photo taken?"
GREEDY = GenerationParams(max_new_tokens=24)


def completion(content: str | None) -> str:
    """A chat-completion body as OpenAI-compatible servers send it."""
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


def sse(*events: str) -> str:
    return "".join(f"data: {event}\n\n" for event in events)


def chunk(text: str) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})


@pytest.fixture(scope="module")
def photo(photos_dir: Path) -> Path:
    return photos_dir / "DSCN0010.jpg"


@pytest.fixture(scope="module")
def backend(tiny_vlm: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_vlm))


@pytest.fixture(scope="module")
def served(tiny_vlm: Path):
    with transformers_serve(tiny_vlm) as base_url:
        yield base_url


# --------------------------------------------------------------------------- transformers, in process


def test_transformers_backend_is_a_backend_with_the_model_name(backend: TransformersBackend, tiny_vlm: Path) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == str(tiny_vlm)
    assert backend.device == "cpu" and str(backend.model.dtype) == "torch.float32"


def test_transformers_answers_a_question_about_a_photo(backend: TransformersBackend, photo: Path) -> None:
    answer = backend.generate([Message.user(QUESTION, images=[photo])], params=GREEDY)
    assert isinstance(answer, str) and answer.strip()
    assert "<|im_end|>" not in answer and "<|image_pad|>" not in answer


def test_transformers_answer_depends_on_the_image(backend: TransformersBackend, photos_dir: Path) -> None:
    answers = {
        backend.generate([Message.user(QUESTION, images=[photos_dir / name])], params=GREEDY)
        for name in ("DSCN0010.jpg", "DSCN0012.jpg", "Kodak_CX7530.jpg")
    }
    assert len(answers) > 1, "the same answer for three different photos: the image is not reaching the model"


def test_transformers_stream_joins_to_the_whole_answer(backend: TransformersBackend, photo: Path) -> None:
    messages = [Message.user(QUESTION, images=[photo])]
    pieces = list(backend.stream(messages, params=GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces) == backend.generate(messages, params=GREEDY)


def test_transformers_greedy_is_deterministic_and_seeded_sampling_reproducible(
    backend: TransformersBackend, photo: Path
) -> None:
    messages = [Message.user(QUESTION, images=[photo])]
    assert backend.generate(messages, params=GREEDY) == backend.generate(messages, params=GREEDY)
    sampling = GenerationParams(max_new_tokens=24, temperature=1.0, seed=7)
    assert backend.generate(messages, params=sampling) == backend.generate(messages, params=sampling)


def test_transformers_respects_max_new_tokens(backend: TransformersBackend, photo: Path) -> None:
    short = backend.generate([Message.user(QUESTION, images=[photo])], params=GenerationParams(max_new_tokens=3))
    token_count = len(backend.processor.tokenizer(short, add_special_tokens=False)["input_ids"])
    assert 1 <= token_count <= 4  # decoding and re-encoding may split one byte-level token in two


def test_transformers_multi_turn_conversation_with_images(backend: TransformersBackend, photos_dir: Path) -> None:
    first = Message.user(QUESTION, images=[photos_dir / "DSCN0010.jpg"])
    reply = backend.generate([first], params=GREEDY)
    follow_up = Message.user("And this one? Same town?", images=[photos_dir / "Kodak_CX7530.jpg"])
    conversation = [Message.system("You are a geolocation expert."), first, Message.assistant(reply), follow_up]
    answer = backend.generate(conversation, params=GREEDY)
    assert answer.strip()
    assert "".join(backend.stream(conversation, params=GREEDY)) == answer
    # The earlier turns are part of the prompt: the follow-up alone is answered differently.
    assert backend.generate([follow_up], params=GREEDY) != answer


def test_transformers_rejects_an_empty_conversation_and_a_bad_image(backend: TransformersBackend, tmp_path) -> None:
    with pytest.raises(BadInputError, match="empty"):
        backend.generate([], params=GREEDY)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a photo")
    with pytest.raises(BadInputError, match="notes.jpg"):
        backend.generate([Message.user(QUESTION, images=[not_an_image])], params=GREEDY)


def test_transformers_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as error:
        TransformersBackend("gaea-tests/no-such-model")
    message = str(error.value)
    assert "\n" not in message
    assert "gaea-tests/no-such-model" in message and "Hugging Face hub" in message
    assert "gaea tiny-model --out /tmp/gaea-tiny" in message
    with pytest.raises(BackendError, match="empty-dir"):
        TransformersBackend(str(tmp_path / "empty-dir"))


def test_transformers_bad_dtype_and_missing_bitsandbytes_are_config_errors(
    tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="float12"):
        TransformersBackend(str(tiny_vlm), dtype="float12")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if bitsandbytes were not installed
    with pytest.raises(ConfigError, match="bitsandbytes"):
        TransformersBackend(str(tiny_vlm), load_in_4bit=True)


@pytest.fixture(scope="module")
def lora_adapter(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny model with random, non-zero weights (so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_transformers_with_lora_adapter_answers_differently(
    backend: TransformersBackend, tiny_vlm: Path, lora_adapter: Path, photo: Path
) -> None:
    tuned = TransformersBackend(str(tiny_vlm), adapter=str(lora_adapter))
    assert tuned.name == f"{tiny_vlm}+{lora_adapter}"
    messages = [Message.user(QUESTION, images=[photo])]
    answer = tuned.generate(messages, params=GREEDY)
    assert answer != backend.generate(messages, params=GREEDY)
    assert "".join(tuned.stream(messages, params=GREEDY)) == answer
    assert tuned.generate(messages, params=GREEDY) == answer


def test_transformers_missing_adapter_names_it(tiny_vlm: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="adapter.*no-adapter-here"):
        TransformersBackend(str(tiny_vlm), adapter=str(tmp_path / "no-adapter-here"))


# --------------------------------------------------------------------------- openai, real transformers serve


def jpeg_round_trip(path: Path) -> Image.Image:
    """The image exactly as the server decodes it from the data URL the client sends."""
    data_url = ImagePart(path).data_url()
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")


def test_openai_backend_uses_the_served_model(served: str, tiny_vlm: Path) -> None:
    with OpenAIBackend(served) as client:
        assert isinstance(client, Backend)
        assert client.name == str(tiny_vlm)


def test_openai_text_answer_matches_the_in_process_model(served: str, backend: TransformersBackend) -> None:
    messages = [Message.user(QUESTION)]
    with load_backend("openai", base_url=served) as client:
        answer = client.generate(messages, params=GREEDY)
    assert answer.strip()
    assert answer == backend.generate(messages, params=GREEDY)


def test_openai_image_answer_and_stream(served: str, backend: TransformersBackend, photo: Path) -> None:
    with OpenAIBackend(served) as client:
        answer = client.generate([Message.user(QUESTION, images=[photo])], params=GREEDY)
        pieces = list(client.stream([Message.user(QUESTION, images=[photo])], params=GREEDY))
    assert answer.strip()
    assert len(pieces) > 1 and "".join(pieces) == answer
    # Same pixels on both sides (the JPEG the server received): the same greedy answer.
    assert answer == backend.generate([Message.user(QUESTION, images=[jpeg_round_trip(photo)])], params=GREEDY)


def test_openai_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(BackendUnreachableError) as error:
        OpenAIBackend(url)
    assert url in str(error.value) and "is it running?" in str(error.value)
    client = OpenAIBackend(url, model="gaea")  # a named model needs no request up front...
    with pytest.raises(BackendUnreachableError, match="cannot reach the model server"):
        client.generate([Message.user(QUESTION)], params=GREEDY)  # ...the first question finds nobody
    with pytest.raises(BackendUnreachableError, match="cannot reach the model server"):
        list(client.stream([Message.user(QUESTION)], params=GREEDY))


# --------------------------------------------------------------------------- openai, scripted server


def test_openai_retries_a_500_then_answers() -> None:
    replies = [Reply(500, "overloaded", {"Retry-After": "0"}), Reply(200, completion("Arezzo, Italy"))]
    with scripted_http_server(replies) as server:
        answer = OpenAIBackend(server.base_url, model="m", retries=2).generate([Message.user(QUESTION)])
    assert answer == "Arezzo, Italy"
    assert server.requests == [("POST", "/v1/chat/completions")] * 2


def test_openai_retries_429_honouring_retry_after_then_streams() -> None:
    replies = [
        Reply(429, json.dumps({"error": {"message": "slow down"}}), {"Retry-After": "0"}),
        Reply(
            200,
            sse(chunk("Are"), chunk("zzo"), json.dumps({"choices": []}), "[DONE]"),
            {"Content-Type": "text/event-stream"},
        ),
    ]
    with scripted_http_server(replies) as server:
        pieces = list(OpenAIBackend(server.base_url, model="m", retries=1).stream([Message.user(QUESTION)]))
    assert pieces == ["Are", "zzo"]
    assert len(server.requests) == 2


def test_openai_gives_up_after_the_retries() -> None:
    with scripted_http_server([Reply(503, "down for maintenance", {"Retry-After": "0"})]) as server:
        with pytest.raises(BackendError, match=r"HTTP 503 after 3 tries: down for maintenance") as error:
            OpenAIBackend(server.base_url, model="m", retries=2).generate([Message.user(QUESTION)])
    assert server.base_url in str(error.value)
    assert len(server.requests) == 3


def test_openai_client_error_is_not_retried_and_quotes_the_server() -> None:
    body = json.dumps({"error": {"message": "model 'nope' does not exist"}})
    with scripted_http_server([Reply(404, body)]) as server:
        with pytest.raises(BackendError, match=r"HTTP 404\): model 'nope' does not exist"):
            OpenAIBackend(server.base_url, model="nope", retries=3).generate([Message.user(QUESTION)])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html>gateway says hi</html>", "not JSON: '<html>gateway says hi</html>'"),
        ("", "empty answer"),
        (json.dumps({"result": "Arezzo"}), r"without choices\[0\].message.content"),
        (json.dumps({"choices": []}), r"without choices\[0\].message.content"),
        (completion(None), "no text"),
    ],
    ids=["html", "empty", "no-choices", "empty-choices", "null-content"],
)
def test_openai_nonsense_answers_are_named(body: str, problem: str) -> None:
    with scripted_http_server([Reply(200, body)]) as server:
        with pytest.raises(BackendError, match=problem) as error:
            OpenAIBackend(server.base_url, model="m", retries=0).generate([Message.user(QUESTION)])
    assert server.base_url in str(error.value)


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (sse(chunk("Are"), "{not json"), "stream event that is not JSON"),
        (sse(chunk("Are"), json.dumps({"error": "CUDA out of memory"})), "failed while answering: CUDA out of memory"),
        (sse(json.dumps({"id": 1})), r"without choices\[0\].delta"),
        ("event: ping\n\n", "empty stream"),
    ],
    ids=["garbage-event", "error-event", "wrong-shape", "no-data"],
)
def test_openai_nonsense_streams_are_named(stream: str, problem: str) -> None:
    with scripted_http_server([Reply(200, stream, {"Content-Type": "text/event-stream"})]) as server:
        with pytest.raises(BackendError, match=problem):
            list(OpenAIBackend(server.base_url, model="m", retries=0).stream([Message.user(QUESTION)]))


def test_openai_model_defaults_to_the_first_listed_and_sends_the_conversation(photo: Path) -> None:
    models = json.dumps({"object": "list", "data": [{"id": "gaea-qwen-lora"}, {"id": "base"}]})
    with scripted_http_server([Reply(200, models), Reply(200, completion("Tuscany"))]) as server:
        client = OpenAIBackend(server.base_url, api_key="secret")
        assert client.name == "gaea-qwen-lora"
        assert client.generate([Message.user(QUESTION, images=[photo])]) == "Tuscany"
    assert server.requests == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert server.headers[1]["authorization"] == "Bearer secret"
    sent = json.loads(server.bodies[1])
    assert sent["model"] == "gaea-qwen-lora" and sent["stream"] is True and sent["temperature"] == 0.0
    image_part, text_part = sent["messages"][0]["content"]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert text_part == {"type": "text", "text": QUESTION}


def test_openai_no_listed_model_is_an_error() -> None:
    with scripted_http_server([Reply(200, json.dumps({"data": []}))]) as server:
        with pytest.raises(BackendError, match="lists no models"):
            OpenAIBackend(server.base_url)


def test_openai_timeout_is_unreachable() -> None:
    with scripted_http_server([Reply(200, completion("late"), delay_s=2.0)]) as server:
        with pytest.raises(BackendUnreachableError, match=r"did not answer in time \(1 tries of 0.3 s"):
            OpenAIBackend(server.base_url, model="m", timeout_s=0.3, retries=0).generate([Message.user(QUESTION)])
