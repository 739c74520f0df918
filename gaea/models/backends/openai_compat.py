"""A backend for any OpenAI-compatible `/v1/chat/completions` server: `vllm serve`, `transformers serve`,
hosted APIs. Images travel as `data:` URLs; streaming uses server-sent events; 429 / 5xx / timeouts /
connection errors are retried with exponential backoff, honouring Retry-After."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx

from gaea.errors import BackendError, BackendUnreachableError
from gaea.retry import retry_call
from gaea.settings import get_settings
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)

#: Seconds allowed to open a connection; a server that does not accept within this is not running.
CONNECT_TIMEOUT_S = 10.0
#: How much of a bad answer to quote in an error message.
SNIPPET_CHARS = 200


class _RetryableStatus(Exception):
    """A 429 or 5xx answer, kept apart so that only these (and transport errors) are retried."""

    def __init__(self, status: int, message: str, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _retry_after_s(response: httpx.Response) -> float | None:
    """Seconds a Retry-After header asks for (either delta-seconds or an HTTP date), None when absent."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The error message a server put in its answer: OpenAI `{"error": {"message"}}`, FastAPI `{"detail"}`, or text."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if body.get("detail"):
            return _snippet(json.dumps(body["detail"]) if not isinstance(body["detail"], str) else body["detail"])
        if body.get("message"):
            return str(body["message"])
    return _snippet(response.text)


def _requested_delay(error: BaseException) -> float | None:
    return error.retry_after_s if isinstance(error, _RetryableStatus) else None


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API.

    Parameters
    ----------
    base_url
        The API root, e.g. ``http://127.0.0.1:8000/v1`` (requests go to ``{base_url}/chat/completions``).
    model
        The served model name; None asks the server (the first id from ``{base_url}/models``).
    api_key
        Sent as a bearer token; None reads ``OPENAI_API_KEY``, else ``"EMPTY"`` (what local servers accept).
    timeout_s
        Seconds to wait for one request; None uses the setting ``http_timeout_s``.
    retries
        Retries after a 429 / 5xx / timeout / connection error; None uses the setting ``http_retries``.

    Raises
    ------
    BackendUnreachableError
        When ``model`` is None and the server cannot be reached to list its models.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> None:
        settings = get_settings()
        self.base_url = base_url.rstrip("/")
        self.retries = settings.http_retries if retries is None else retries
        self.timeout_s = settings.http_timeout_s if timeout_s is None else timeout_s
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": settings.user_agent},
        )
        self._server_answered = False
        self.model = model or self._first_served_model()
        self.name = self.model

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def generate(self, messages: list[Message], *, params: GenerationParams | None = None) -> str:
        """The whole answer to the conversation (one non-streaming request)."""
        body = self._post_json("/chat/completions", self._payload(messages, params, stream=False))
        return self._content_of(body)

    def stream(self, messages: list[Message], *, params: GenerationParams | None = None) -> Iterator[str]:
        """The answer piece by piece as the server sends it (server-sent events).

        Opening the stream is retried like any request; once pieces have been yielded an error ends the
        stream with BackendError, since a retry would repeat text the caller has already shown.
        """
        payload = self._payload(messages, params, stream=True)
        url = self._url("/chat/completions")
        response = self._with_retries(lambda: self._open_stream(url, payload), url)
        try:
            yield from self._pieces_from_sse(response, url)
        except httpx.HTTPError as error:
            raise BackendError(f"the model server at {url} broke off its answer: {error}") from error
        finally:
            response.close()

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _payload(self, messages: list[Message], params: GenerationParams | None, *, stream: bool) -> dict[str, Any]:
        params = params or GenerationParams()
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in messages],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        return payload

    def _first_served_model(self) -> str:
        url = self._url("/models")
        body = self._with_retries(lambda: self._checked_json(self._client.get(url), url), url)
        data = body.get("data") if isinstance(body, dict) else None
        ids = [entry.get("id") for entry in data or [] if isinstance(entry, dict) and entry.get("id")]
        if not ids:
            listed = _snippet(json.dumps(body))
            raise BackendError(f"the model server at {url} lists no models ({listed}); name the model to use")
        log.info("using model %s served at %s", ids[0], self.base_url)
        return str(ids[0])

    def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        url = self._url(path)
        return self._with_retries(lambda: self._checked_json(self._client.post(url, json=payload), url), url)

    def _with_retries(self, call: Any, url: str) -> Any:
        """Run `call` with backoff; turn what is left after the retries into our error classes."""
        try:
            return retry_call(call, retries=self.retries, is_retryable=self._is_retryable, delay_for=_requested_delay)
        except _RetryableStatus as error:
            tries = self.retries + 1
            raise BackendError(
                f"the model server at {url} answered HTTP {error.status} after {tries} tries: {error.message}"
            ) from error
        except httpx.TimeoutException as error:
            raise BackendUnreachableError(
                f"the model server at {url} did not answer in time ({self.retries + 1} tries of "
                f"{self.timeout_s:g} s, {type(error).__name__}); raise --timeout or check the server"
            ) from error
        except httpx.TransportError as error:
            raise BackendUnreachableError(
                f"cannot reach the model server at {url}: {error or type(error).__name__} (is it running?)"
            ) from error

    def _is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, httpx.ConnectError) and not self._server_answered:
            # Nothing has ever listened at this URL: a wrong URL or a server that is not running. Fail now
            # rather than after a minute of backoff; once a server has answered, a refusal is a restart.
            return False
        return isinstance(error, (_RetryableStatus, httpx.TransportError))

    def _raise_for_status(self, response: httpx.Response, url: str) -> None:
        self._server_answered = True
        status = response.status_code
        if status == 429 or status >= 500:
            raise _RetryableStatus(status, _server_message(response), _retry_after_s(response))
        if status >= 400:
            hint = "" if status != 404 or "/v1" in self.base_url else " (does the base URL need to end in /v1?)"
            raise BackendError(
                f"the model server at {url} refused the request (HTTP {status}): {_server_message(response)}{hint}"
            )

    def _checked_json(self, response: httpx.Response, url: str) -> Any:
        self._raise_for_status(response, url)
        if not response.content.strip():
            raise BackendError(f"the model server at {url} sent an empty answer (HTTP {response.status_code})")
        try:
            return response.json()
        except ValueError as error:
            raise BackendError(
                f"the model server at {url} sent an answer that is not JSON: {_snippet(response.text)!r}"
            ) from error

    def _open_stream(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        response = self._client.send(self._client.build_request("POST", url, json=payload), stream=True)
        if response.status_code >= 400:
            response.read()
            response.close()
            self._raise_for_status(response, url)
        return response

    def _content_of(self, body: Any) -> str:
        """`choices[0].message.content` of a chat completion, or BackendError saying what is missing."""
        url = self._url("/chat/completions")
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as error:
            raise BackendError(
                f"the model server at {url} sent a JSON answer without choices[0].message.content: "
                f"{_snippet(json.dumps(body))}"
            ) from error
        if not isinstance(content, str):
            raise BackendError(f"the model server at {url} sent no text in its answer: {_snippet(json.dumps(body))}")
        return content

    def _pieces_from_sse(self, response: httpx.Response, url: str) -> Iterator[str]:
        """Text deltas from an SSE chat-completion stream, until `data: [DONE]` or the end of the stream."""
        saw_event = False
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            saw_event = True
            piece = self._delta_of(data, url)
            if piece:
                yield piece
        if not saw_event:
            raise BackendError(f"the model server at {url} sent an empty stream (no 'data:' events)")

    def _delta_of(self, data: str, url: str) -> str:
        try:
            event = json.loads(data)
        except ValueError as error:
            raise BackendError(
                f"the model server at {url} sent a stream event that is not JSON: {_snippet(data)!r}"
            ) from error
        if isinstance(event, dict) and event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise BackendError(f"the model server at {url} failed while answering: {message}")
        try:
            choices = event["choices"]
            if not choices:  # a usage-only event at the end of some streams
                return ""
            return choices[0].get("delta", {}).get("content") or ""
        except (KeyError, TypeError, AttributeError) as error:
            raise BackendError(
                f"the model server at {url} sent a stream event without choices[0].delta: {_snippet(data)}"
            ) from error
