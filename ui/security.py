"""What keeps the chat from being exposed by accident: the loopback check behind `--allow-public`, failed
logins slowed down per client, and how long uploads are kept."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

#: Seconds an uploaded photo is kept (a conversation about it ends when it is deleted).
KEEP_UPLOADS_S = 3600
#: Seconds a client waits after its first failed login; each further failure doubles it, up to the cap.
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
#: Clients remembered at once (the least recently seen is forgotten first), so memory stays bounded.
MAX_CLIENTS = 10_000
LOGIN_PATHS = ("/login", "/login/")


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the app on this machine: every address it names is a loopback one."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


@dataclass
class _Client:
    failures: int = 0
    allowed_at: float = 0.0


class LoginThrottle:
    """ASGI middleware: after a failed login, the same client (by address) gets 429 until a delay has passed,
    1 s and doubling with each further failure (capped at 60 s); a successful login clears it.

    Gradio's login route counts no failures and its auth callback never sees the request, so the delay cannot
    live there; rate-limit libraries (slowapi) count every request, not failed logins. Attempts of one client
    are checked one at a time, so parallel guesses cannot slip in before a failure is counted.
    """

    def __init__(self, app: Any, *, first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S) -> None:
        self.app = app
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        key = (scope.get("client") or ("unknown",))[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            client = self._client(key)
            wait_s = client.allowed_at - time.monotonic()
            if wait_s > 0:
                await _too_many_attempts(send, wait_s)
                return
            status: list[int] = []

            async def send_and_watch(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            await self.app(scope, receive, send_and_watch)
            self._record(key, client, succeeded=bool(status) and status[0] < 400)
        if not lock.locked() and key not in self._clients:
            self._locks.pop(key, None)

    def _client(self, key: str) -> _Client:
        client = self._clients.pop(key, None) or _Client()
        self._clients[key] = client  # most recently seen last
        while len(self._clients) > MAX_CLIENTS:
            forgotten, _ = self._clients.popitem(last=False)
            self._locks.pop(forgotten, None)
        return client

    def _record(self, key: str, client: _Client, *, succeeded: bool) -> None:
        if succeeded:
            self._clients.pop(key, None)
            return
        client.failures += 1
        delay = min(self.max_delay_s, self.first_delay_s * 2 ** (client.failures - 1))
        client.allowed_at = time.monotonic() + delay


async def _too_many_attempts(send: Any, wait_s: float) -> None:
    retry_after = str(max(1, round(wait_s + 0.5)))
    body = f'{{"detail": "Too many failed logins; try again in {retry_after} s."}}'.encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", retry_after.encode()),
               (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
