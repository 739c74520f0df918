"""Real HTTP servers for tests, bound to 127.0.0.1 and stopped on exit even when the test fails.

- `transformers_serve(model_path)`: the OpenAI-compatible server that ships with transformers
  (`transformers serve`), serving one model; yields its base URL ``http://127.0.0.1:PORT/v1``.
- `scripted_http_server(replies)`: a tiny `http.server` that answers each request with the next scripted
  reply (status, headers, body), for exercising how clients handle garbage, errors and retries.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from gaea.models.serving import build_transformers_command

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stop_process_group(process: subprocess.Popen, *, grace_s: float = 10.0) -> None:
    """SIGTERM the server's whole process group, then SIGKILL whatever is left after `grace_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)


def _wait_until_ready(base_url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Poll `/health` and `/v1/models` until both answer 200; fail early if the server process dies."""
    root = base_url.removesuffix("/v1")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited with code {process.returncode} before it was ready:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        with contextlib.suppress(httpx.HTTPError):
            if (
                httpx.get(root + "/health", timeout=2).status_code == 200
                and httpx.get(base_url + "/models", timeout=2).status_code == 200
            ):
                return
        time.sleep(0.3)
    raise TimeoutError(
        f"transformers serve was not ready at {base_url} after {timeout_s:.0f} s:\n"
        + log_path.read_text(errors="replace")[-3000:]
    )


@contextlib.contextmanager
def transformers_serve(model_path: str | Path, port: int | None = None, *, timeout_s: float = 180.0) -> Iterator[str]:
    """Serve `model_path` with `transformers serve` on 127.0.0.1 and yield ``http://127.0.0.1:PORT/v1``.

    The command is the project's own (`gaea.models.serving.build_transformers_command`: the stock server, with
    processors loaded without torchvision); the model is preloaded, so `/v1/models` lists it alone. The
    server runs in its own process group, which is killed on exit, also when the test fails.
    """
    port = port or free_port()
    base_url = f"http://{HOST}:{port}/v1"
    command = build_transformers_command(str(model_path), host=HOST, port=port)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="gaea-serve-") as tmp:
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                _wait_until_ready(base_url, process, log_path, timeout_s)
                yield base_url
            finally:
                _stop_process_group(process)


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (to exercise client timeouts).
    delay_s: float = 0.0


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
            # A client that timed out has hung up: that is the scripted case, not a server failure.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server_state.base_url = f"http://{HOST}:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def gradio_app(assistant, **launch_options) -> Iterator[str]:
    """The chat app (ui.app) of `assistant` on a free 127.0.0.1 port; yields its URL and closes it on exit."""
    from ui.app import build_app, launch_kwargs

    app = build_app(assistant)
    port = free_port()
    app.launch(prevent_thread_lock=True, **launch_kwargs(port=port, **launch_options))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
