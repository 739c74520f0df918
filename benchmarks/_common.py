"""What several benchmarks share (kept here: benchmarks never import the tests)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONTENT_TYPES = {".json": "application/json", ".xml": "application/osm3s+xml"}


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

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = SavedAnswerServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/api/interpreter")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
