"""What several benchmarks share (kept here: benchmarks never import the tests)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: The photo the chat benchmarks ask about, and their question.
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "DSCN0010.jpg"
QUESTION = "Where was this photo taken?"
CONTENT_TYPES = {".json": "application/json", ".xml": "application/osm3s+xml"}


@contextlib.contextmanager
def loopback_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """`handler` served on 127.0.0.1 (a free port: ``server.server_address[1]``) in a thread, shut down on exit
    even when the caller fails; the one such server of the benchmarks and the tests."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class SavedAnswerServer:
    """Where a saved-answer server listens, and how many requests it has answered."""

    url: str
    requests: int = 0


@contextlib.contextmanager
def saved_answer_server(answer: Path) -> Iterator[SavedAnswerServer]:
    """An HTTP server on 127.0.0.1 answering every POST with one saved Overpass answer (JSON or OSM XML)."""
    body = answer.read_bytes()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.requests += 1
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPES[answer.suffix])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep the benchmark's output readable
            pass

    with loopback_http_server(Handler) as httpd:
        state = SavedAnswerServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/api/interpreter")
        yield state


#: How a loopback chat server answers one request: given the request's path and headers, the status, the
#: headers and the chunks of the body (written and flushed one by one; the connection closes after the last).
Answer = Callable[[str, dict[str, str]], tuple[int, dict[str, str], Iterator[bytes]]]


def background_chat_server(answer: Answer, *, lifetime_s: float = 120.0) -> str:
    """An HTTP server on 127.0.0.1 answering every request with `answer`, in daemon threads, for
    `lifetime_s` seconds (it outlives the call that starts it, and stops by itself); its API root
    ``http://127.0.0.1:PORT/v1``."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, chunks = answer(self.path, {k.lower(): v for k, v in self.headers.items()})
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: its case
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Timer(lifetime_s, lambda: (httpd.shutdown(), httpd.server_close()))
    stop.daemon = True
    stop.start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def sse_event(text: str = "", *, finish_reason: str | None = None) -> bytes:
    """One chat-completion chunk as a server-sent event."""
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}
    return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream"}
