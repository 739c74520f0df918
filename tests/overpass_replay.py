"""A real HTTP server on 127.0.0.1 that replays saved Overpass answers, for tests.

Each request takes the next scripted action (an HTTP error, a stall, a dropped connection, a
saved answer); with the script empty it serves the default answer. Every request is recorded
(headers, query text, arrival time) so tests can check what the client really sent.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

CONTENT_TYPES = {".json": "application/json", ".xml": "application/osm3s+xml"}


@dataclass(frozen=True)
class Answer:
    """A saved Overpass response file served with status 200."""

    path: Path


@dataclass(frozen=True)
class Status:
    """An HTTP error status, optionally with a Retry-After header."""

    code: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Stall:
    """Read the request, then say nothing for `seconds` (longer than the client's read timeout)."""

    seconds: float


@dataclass(frozen=True)
class Reset:
    """Read the request, then drop the connection with a TCP reset."""


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    query: str
    arrived_at: float = field(default_factory=time.monotonic)


class OverpassReplayServer:
    """Serves `default` (a saved answer) unless a scripted action is queued; records every request."""

    def __init__(self, default: Path):
        self.default = Answer(Path(default))
        self.script: deque[Answer | Status | Stall | Reset] = deque()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        # A short poll interval makes shutdown() at teardown quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="overpass-replay", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/api/interpreter"

    def queue(self, *actions: Answer | Status | Stall | Reset) -> None:
        """Actions for the next requests, in order."""
        with self._lock:
            self.script.extend(actions)

    def next_action(self) -> Answer | Status | Stall | Reset:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> OverpassReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OverpassReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(server: OverpassReplayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            form = parse_qs(body)
            self._answer(form["data"][0] if "data" in form else body)

        def do_GET(self) -> None:  # noqa: N802
            query = parse_qs(self.path.partition("?")[2]).get("data", [""])[0]
            self._answer(query)

        def _answer(self, query: str) -> None:
            server.record(RecordedRequest(self.command, self.path, dict(self.headers), query))
            action = server.next_action()
            if isinstance(action, Stall):
                time.sleep(action.seconds)
                self._send_quietly(200, b"{}", "application/json")
            elif isinstance(action, Reset):
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
            elif isinstance(action, Status):
                headers = {"Retry-After": action.retry_after} if action.retry_after else {}
                page = f"<html><body><p><strong>Error</strong>: HTTP {action.code}</p></body></html>".encode()
                self._send_quietly(action.code, page, "text/html", headers)
            else:
                self._send_quietly(200, action.path.read_bytes(), CONTENT_TYPES[action.path.suffix])

        def _send_quietly(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (a stall test): nothing left to tell it

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler
