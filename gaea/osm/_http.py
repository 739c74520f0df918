"""The polite Overpass HTTP client and its disk cache.

Requests are paced (``min_interval_s`` between starts, shared by the threads of one process), carry an
identifying User-Agent and are retried with exponential backoff on 429 / 5xx, timeouts and dropped
connections, honouring ``Retry-After``. Answers are cached on disk by a hash of endpoint and query, so a
repeated query makes no request; an answer is stored only once it has been read without error.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from gaea.credentials import client_options, split_endpoint
from gaea.errors import OSMError
from gaea.io import atomic_write_bytes
from gaea.osm.convert import JSON_TYPE, XML_TYPE
from gaea.osm.sanitize import sanitize_text
from gaea.retry import RetryableStatus, is_retryable_status, retry_call

_HTML_ERROR = re.compile(r"<p><strong[^>]*>(?P<msg>.*?)</p>", re.S)
_HTML_TAG = re.compile(r"<[^>]*?>")

Answer = tuple[bytes, str]  # body, content type


@dataclass
class OverpassHTTP:
    """Posts Overpass QL to one endpoint, politely, through a disk cache of its answers.

    The fields are the parameters of :class:`gaea.osm.overpass.OverpassSource` of the same names.
    """

    url: str
    cache_dir: Path
    user_agent: str
    http_timeout_s: float
    min_interval_s: float
    retries: int
    backoff_s: float
    max_backoff_s: float
    #: Requests actually sent (attempts included), for logs and tests.
    requests_sent: int = 0

    def __post_init__(self) -> None:
        #: The endpoint as messages may show it (no credentials, no query values).
        self._endpoint = split_endpoint(self.url)
        self.shown_url = self._endpoint.shown
        self._client: httpx.Client | None = None
        self._pace_lock = threading.Lock()
        self._last_request_at = -math.inf

    def __getstate__(self) -> dict:
        # Worker processes get their own connection pool and pacing lock.
        return {**self.__dict__, "_client": None, "_pace_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _pace_lock=threading.Lock())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def cache_path(self, query: str) -> Path:
        """Where the answer to `query` from this endpoint is cached (``.json``; ``.xml`` for XML answers)."""
        key = hashlib.sha256(f"{self.url}\n{query}".encode()).hexdigest()
        return self.cache_dir / f"{key}.json"

    def cached(self, query: str) -> Answer | None:
        """The stored answer to `query`, None when it was never stored."""
        path = self.cache_path(query)
        for candidate, content_type in ((path, JSON_TYPE), (path.with_suffix(".xml"), XML_TYPE)):
            if candidate.is_file():
                return candidate.read_bytes(), content_type
        return None

    def store(self, query: str, answer: Answer) -> None:
        body, content_type = answer
        atomic_write_bytes(self.cache_path(query).with_suffix(".xml" if content_type == XML_TYPE else ".json"), body)

    def fetch(self, query: str) -> Answer:
        """The server's answer to `query` (retried as the class says).

        Raises
        ------
        OSMError
            When the retries are spent, or the server refused the query.
        """
        try:
            return retry_call(
                lambda: self._post_once(query),
                retries=self.retries,
                base_delay_s=self.backoff_s,
                max_delay_s=self.max_backoff_s,
            )
        except (RetryableStatus, httpx.HTTPError) as error:
            raise OSMError(
                f"Overpass request to {self.shown_url} failed after {self.retries + 1} attempts: {_describe(error)}"
            ) from error

    def _post_once(self, query: str) -> Answer:
        client = self._http()
        self._wait_for_turn()
        self.requests_sent += 1
        response = client.post(self._endpoint.url, data={"data": query})
        if response.status_code == 200:
            return response.content, response.headers.get("content-type", "").split(";")[0].strip()
        if is_retryable_status(response.status_code):
            raise RetryableStatus.of(response)
        raise OSMError(_http_error_message(self.shown_url, response))

    def _wait_for_turn(self) -> None:
        with self._pace_lock:
            wait = self._last_request_at + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request_at = time.monotonic()

    def _http(self) -> httpx.Client:
        if self._client is None:
            options = client_options(self._endpoint, api_key=None)
            options["headers"]["User-Agent"] = self.user_agent
            # httpx drops the credentials when a redirect leaves the endpoint's origin.
            self._client = httpx.Client(timeout=httpx.Timeout(self.http_timeout_s), follow_redirects=True, **options)
        return self._client


def _describe(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    return str(error) or type(error).__name__


def _http_error_message(url: str, response: httpx.Response) -> str:
    messages = [_HTML_TAG.sub("", match.group("msg")) for match in _HTML_ERROR.finditer(response.text)]
    detail = "; ".join(sanitize_text(message, max_len=300) for message in messages)
    if response.status_code == 400:
        return f"Overpass at {url} rejected the query (HTTP 400): {detail or 'bad request'}"
    return f"Overpass at {url} answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
