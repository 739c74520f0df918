"""Real HTTP servers for tests, bound to 127.0.0.1 and stopped on exit even when the test fails.

- `transformers_serve(model_path)`: the project's own `gaea.models.serving.loopback_transformers_server`
  (the stock `transformers serve`, one model preloaded); yields its base URL ``http://127.0.0.1:PORT/v1``.
- `scripted_http_server(replies)`: a tiny `http.server` that answers each request with the next scripted
  reply (status, headers, body, or a body streamed chunk by chunk), for exercising how clients handle
  garbage, errors, retries, endless and broken streams.
- `recording_openai_server(answer)`: an OpenAI-compatible server (`/v1/models`, streamed
  `/v1/chat/completions`) that answers `answer` (or what `answer(request_body)` says) and records each
  request: path, credentials and body.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from benchmarks._common import loopback_http_server
from gaea.models.serving import LOOPBACK as HOST
from gaea.models.serving import free_port
from gaea.models.serving import loopback_transformers_server as transformers_serve

__all__ = [
    "HOST", "RecordedRequest", "Reply", "ScriptedServer", "free_port", "gradio_app", "recording_openai_server",
    "scripted_http_server", "sse", "transformers_serve",
]


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (to exercise client timeouts).
    delay_s: float = 0.0
    #: A body sent piece by piece instead of `body`: called for each request, each chunk it yields is
    #: written and flushed as it comes; the connection closes after the last (no Content-Length).
    stream: Callable[[], Iterator[bytes]] | None = None


@dataclass
class ScriptedServer:
    """What a scripted server was asked, in order: method and path, headers and body of each request."""

    base_url: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def scripted_http_server(replies: list[Reply]) -> Iterator[ScriptedServer]:
    """A real HTTP server on 127.0.0.1 answering request i with ``replies[i]`` (the last one repeats).

    Yields a ScriptedServer whose ``base_url`` is ``http://127.0.0.1:PORT/v1``.
    """
    if not replies:
        raise ValueError("scripted_http_server needs at least one reply")
    lock = threading.Lock()
    server_state = ScriptedServer(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                server_state.requests.append((self.command, self.path))
                server_state.headers.append({name.lower(): value for name, value in self.headers.items()})
                server_state.bodies.append(body)
                reply = replies[min(len(server_state.requests), len(replies)) - 1]
            time.sleep(reply.delay_s)
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            # A client that timed out or stopped reading has hung up: the scripted case, not a server failure.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.stream is None:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.end_headers()
                for chunk in reply.stream():
                    self.wfile.write(chunk)
                    self.wfile.flush()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    with loopback_http_server(Handler) as server:
        server_state.base_url = f"http://{HOST}:{server.server_address[1]}/v1"
        yield server_state


def sse(*events: str) -> str:
    """Server-sent events, one `data:` line each."""
    return "".join(f"data: {event}\n\n" for event in events)


def _chunk(text: str, finish_reason: str | None = None) -> str:
    choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish_reason}
    return json.dumps({"object": "chat.completion.chunk", "choices": [choice]})


@dataclass(frozen=True)
class RecordedRequest:
    """One request to a recording server: method, path with its query string, the Authorization sent, and
    the JSON body."""

    method: str
    path: str
    authorization: str | None
    body: dict = field(default_factory=dict)


@contextlib.contextmanager
def recording_openai_server(answer: str | Callable[[dict], str] = "Arezzo, Italy", *,
                            model: str = "stub") -> Iterator[tuple[str, list]]:
    """An OpenAI-compatible server on 127.0.0.1 that serves `model` and answers `answer` to every chat
    completion, or ``answer(body)`` when it is a function of the request's JSON body (streamed word by word,
    with finish_reason and [DONE]); yields ``(base_url, requests)``, the list of RecordedRequest filling as
    requests arrive."""
    requests: list[RecordedRequest] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            asked = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                requests.append(RecordedRequest(self.command, self.path, self.headers.get("Authorization"), asked))
            route = self.path.split("?")[0]
            text = answer(asked) if callable(answer) and route == "/v1/chat/completions" else answer
            if self.command == "GET" and route == "/v1/models":
                self._send(200, "application/json", json.dumps({"object": "list", "data": [{"id": model}]}))
            elif self.command == "POST" and route == "/v1/chat/completions" and asked.get("stream"):
                words = [word + " " for word in str(text).split(" ")]
                words[-1] = words[-1].rstrip()
                events = [_chunk(word) for word in words] + [_chunk("", "stop"), "[DONE]"]
                self._send(200, "text/event-stream", sse(*events))
            elif self.command == "POST" and route == "/v1/chat/completions":
                message = {"role": "assistant", "content": text}
                self._send(200, "application/json", json.dumps({"choices": [{"index": 0, "message": message}]}))
            else:
                self._send(404, "application/json", json.dumps({"error": {"message": f"no route {self.path}"}}))

        do_GET = do_POST = _answer

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    with loopback_http_server(Handler) as server:
        yield f"http://{HOST}:{server.server_address[1]}/v1", requests


@contextlib.contextmanager
def gradio_app(assistant, *, app_options: dict | None = None, **launch_options) -> Iterator[str]:
    """The chat app (ui.app) of `assistant` on a free 127.0.0.1 port; yields its URL and closes it on exit.

    `app_options` go to `ui.app.build_app`, `launch_options` to `ui.app.launch_kwargs` (`examples_dir` to both)."""
    from ui.app import build_app, launch_kwargs

    app = build_app(assistant, examples_dir=launch_options.get("examples_dir"), **(app_options or {}))
    port = free_port()
    app.launch(prevent_thread_lock=True, **launch_kwargs(port=port, **launch_options))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
