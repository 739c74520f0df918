"""A backend for any OpenAI-compatible `/v1/chat/completions` server: `vllm serve`, `transformers serve`,
hosted APIs. Images travel as `data:` URLs; streaming uses server-sent events; 429 / 5xx / dropped
connections are retried with exponential backoff, honouring Retry-After (a timeout is retried once).

Every answer has limits, so that no server can hold a caller forever or flood it:

- a deadline for the whole answer, retries included (``deadline_s``; SSE keep-alive comments do not
  extend it) and a longest silence (``timeout_s``: to connect, to start answering, between two pieces);
- a cap on its size: the text is cut once it passes about the ``max_new_tokens`` asked for (counted in
  pieces and in bytes), and a server sending far more bytes than that many tokens need is an error;
- a stream must end with its ``data: [DONE]`` terminator: one that stops before is an error, retried when
  nothing of it was shown yet.

What the server says (answers, error messages) is stripped of terminal control sequences.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from gaea.controls import ControlStripper, strip_controls
from gaea.credentials import MODEL_KEY_ENV, api_key_for, client_options, split_endpoint
from gaea.errors import BackendError, BackendUnreachableError, ConfigError
from gaea.retry import RetryableStatus, is_retryable_status, is_transient, retry_call
from gaea.settings import get_settings
from gaea.types import GenerationParams, Message

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Seconds allowed to open a connection; a server that does not accept within this is not running.
CONNECT_TIMEOUT_S = 10.0
#: Retries after a timeout: a server that stayed silent twice is stalled, not busy.
TIMEOUT_RETRIES = 1
#: An answer's text is cut once it has more pieces than the tokens asked for plus this (a piece of a
#: stream carries one token or more)...
EXTRA_PIECES = 8
#: ...or more bytes than this per token asked for (a token is a few bytes; this leaves room for long ones).
TEXT_BYTES_PER_TOKEN = 32
#: Bytes one answer may take on the wire, JSON and SSE framing included: this per token asked, plus
#: RAW_BYTES_SLACK. A server that sends more is not honouring max_tokens.
RAW_BYTES_PER_TOKEN = 2048
RAW_BYTES_SLACK = 256 * 1024
#: How much of a bad answer to quote in an error message.
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class _Budget:
    """What one answer may cost: a deadline (a `time.monotonic()` instant) and caps on its size."""

    deadline: float
    deadline_s: float
    max_tokens: int

    @property
    def max_pieces(self) -> int:
        return self.max_tokens + EXTRA_PIECES

    @property
    def max_text_bytes(self) -> int:
        return self.max_tokens * TEXT_BYTES_PER_TOKEN

    @property
    def max_raw_bytes(self) -> int:
        return RAW_BYTES_SLACK + self.max_tokens * RAW_BYTES_PER_TOKEN


class _DeadlinePassed(BackendError):
    """The answer took longer than its deadline (never retried: the time is spent)."""


class _CutStream(BackendError):
    """A stream that ended without its `data: [DONE]` terminator."""


def _snippet(text: str) -> str:
    text = " ".join(strip_controls(text).split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _server_message(response: httpx.Response) -> str:
    """The error message a server put in its answer: OpenAI `{"error": {"message"}}`, FastAPI `{"detail"}`, or text."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return _snippet(str(error["message"]))
        if isinstance(error, str) and error:
            return _snippet(error)
        if body.get("detail"):
            return _snippet(json.dumps(body["detail"]) if not isinstance(body["detail"], str) else body["detail"])
        if body.get("message"):
            return _snippet(str(body["message"]))
    return _snippet(response.text)


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API.

    Parameters
    ----------
    base_url
        The API root, e.g. ``http://127.0.0.1:8000/v1`` (requests go to ``{base_url}/chat/completions``).
        ``user:pass@`` in it is sent as HTTP Basic auth, a query string with every request; neither is shown
        in messages (see `gaea.credentials`).
    model
        The served model name; None asks the server (the first id from ``{base_url}/models``).
    api_key
        Sent as a bearer token (``env:NAME`` reads the variable NAME); None reads `key_env`, and
        OPENAI_API_KEY only when `base_url` is https://api.openai.com (`gaea.credentials.api_key_for`).
    key_env
        The environment variable of this endpoint's key: GAEA_API_KEY for the model, others for the judge
        (GAEA_JUDGE_API_KEY) and the question rewriter (GAEA_REWRITE_API_KEY).
    timeout_s
        Longest silence of the server, in seconds; None uses the setting ``http_timeout_s``.
    deadline_s
        Most seconds one answer may take, retries included; None uses the setting ``answer_deadline_s``.
    retries
        Retries after a 429 / 5xx / connection error (a timeout is retried once); None uses ``http_retries``.

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
        key_env: str = MODEL_KEY_ENV,
        timeout_s: float | None = None,
        deadline_s: float | None = None,
        retries: int | None = None,
    ) -> None:
        settings = get_settings()
        endpoint = split_endpoint(base_url)
        self.base_url = endpoint.url
        self.retries = settings.http_retries if retries is None else retries
        self.timeout_s = settings.http_timeout_s if timeout_s is None else timeout_s
        self.deadline_s = settings.answer_deadline_s if deadline_s is None else deadline_s
        if not (self.timeout_s > 0 and self.deadline_s > 0):
            raise ConfigError(
                f"--timeout ({self.timeout_s:g} s) and --deadline ({self.deadline_s:g} s) must be positive"
            )
        options = client_options(endpoint, api_key_for(base_url, api_key, env=key_env))
        options["headers"]["User-Agent"] = settings.user_agent
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)), **options
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
        """The whole answer to the conversation.

        It is streamed too, so that a silent server is told apart from a busy one (a busy one sends
        pieces) and the answer's caps apply as it arrives; nothing being shown before the end, a stream
        that breaks off is retried whole. A server that answers with one JSON completion instead of a
        stream is read as such.
        """
        params = params or GenerationParams()
        budget = self._budget(params.max_new_tokens)
        url = self._url("/chat/completions")
        payload = self._payload(messages, params)

        def whole_answer() -> str:
            response, pieces = self._answer_from_first_piece(url, payload, budget)
            try:
                return "".join(pieces)
            finally:
                response.close()

        return strip_controls(self._with_retries(whole_answer, url, budget))

    def stream(self, messages: list[Message], *, params: GenerationParams | None = None) -> Iterator[str]:
        """The answer piece by piece as the server sends it (server-sent events).

        Until its first piece the stream is retried like any request; once pieces have been yielded an
        error ends it with BackendError, since a retry would repeat text the caller has already shown.
        """
        params = params or GenerationParams()
        budget = self._budget(params.max_new_tokens)
        url = self._url("/chat/completions")
        payload = self._payload(messages, params)
        response, pieces = self._with_retries(lambda: self._answer_from_first_piece(url, payload, budget), url, budget)
        stripper = ControlStripper()
        try:
            for piece in pieces:
                if shown := stripper.feed(piece):
                    yield shown
            if tail := stripper.flush():
                yield tail
        except httpx.HTTPError as error:
            raise BackendError(f"the model server at {url} broke off its answer: {error}") from error
        finally:
            response.close()

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _budget(self, max_tokens: int) -> _Budget:
        return _Budget(deadline=time.monotonic() + self.deadline_s, deadline_s=self.deadline_s, max_tokens=max_tokens)

    def _payload(self, messages: list[Message], params: GenerationParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [message.to_openai() for message in messages],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        return payload

    def _first_served_model(self) -> str:
        url = self._url("/models")
        budget = self._budget(0)
        body = self._with_retries(lambda: self._read_json(self._send("GET", url, budget), url, budget), url, budget)
        data = body.get("data") if isinstance(body, dict) else None
        ids = [entry.get("id") for entry in data or [] if isinstance(entry, dict) and entry.get("id")]
        if not ids:
            listed = _snippet(json.dumps(body))
            raise BackendError(f"the model server at {url} lists no models ({listed}); name the model to use")
        log.info("using model %s served at %s", ids[0], self.base_url)
        return strip_controls(str(ids[0]))

    # ------------------------------------------------------------------------------------------ requests

    def _with_retries(self, call: Callable[[], T], url: str, budget: _Budget) -> T:
        """Run `call` with backoff until the deadline; turn what is left after the retries into our errors."""
        attempts = timeouts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return call()

        def is_retryable(error: BaseException) -> bool:
            nonlocal timeouts
            if isinstance(error, httpx.ConnectError) and not self._server_answered:
                # Nothing has ever listened at this URL: a wrong URL or a server that is not running. Fail now
                # rather than after a minute of backoff; once a server has answered, a refusal is a restart.
                return False
            if isinstance(error, httpx.TimeoutException):
                timeouts += 1
                return timeouts <= TIMEOUT_RETRIES
            return isinstance(error, _CutStream) or is_transient(error)

        try:
            return retry_call(attempt, retries=self.retries, is_retryable=is_retryable, deadline=budget.deadline)
        except (RetryableStatus, _CutStream, httpx.TransportError) as error:
            raise self._after_retries(error, url, attempts) from error

    def _after_retries(self, error: BaseException, url: str, attempts: int) -> BackendError:
        """Our error for what was left of `error` after `attempts` tries."""
        if isinstance(error, RetryableStatus):
            return BackendError(
                f"the model server at {url} answered HTTP {error.status} after {attempts} tries: {error.message}"
            )
        if isinstance(error, _CutStream):
            return _CutStream(f"{error} ({attempts} tries)")
        if isinstance(error, httpx.TimeoutException):
            return BackendUnreachableError(
                f"the model server at {url} did not answer in time ({attempts} tries of "
                f"{self.timeout_s:g} s, {type(error).__name__}); raise --timeout or check the server"
            )
        return BackendUnreachableError(
            f"cannot reach the model server at {url}: {error or type(error).__name__} (is it running?)"
        )

    def _send(self, method: str, url: str, budget: _Budget, payload: dict[str, Any] | None = None) -> httpx.Response:
        """The server's response, its body not read yet; an error status is raised as our error."""
        remaining = max(0.1, budget.deadline - time.monotonic())
        connect = min(CONNECT_TIMEOUT_S, self.timeout_s, remaining)
        timeout = httpx.Timeout(min(self.timeout_s, remaining), connect=connect)
        request = self._client.build_request(method, url, json=payload, timeout=timeout)
        response = self._client.send(request, stream=True)
        self._server_answered = True
        if response.status_code >= 400:
            try:
                body = b"".join(self._body_chunks(response, url, budget))
            finally:
                response.close()
            self._raise_for_status(httpx.Response(response.status_code, headers=response.headers, content=body), url)
        return response

    def _read_json(self, response: httpx.Response, url: str, budget: _Budget) -> Any:
        """The JSON body of `response` (read within the budget), closing it."""
        try:
            body = b"".join(self._body_chunks(response, url, budget))
        finally:
            response.close()
        if not body.strip():
            raise BackendError(f"the model server at {url} sent an empty answer (HTTP {response.status_code})")
        try:
            return json.loads(body)
        except ValueError as error:
            text = _snippet(body.decode("utf-8", errors="replace"))
            raise BackendError(f"the model server at {url} sent an answer that is not JSON: {text!r}") from error

    def _body_chunks(self, response: httpx.Response, url: str, budget: _Budget) -> Iterator[bytes]:
        for chunk in response.iter_bytes():
            self._check_budget(response, url, budget)
            yield chunk

    def _check_budget(self, response: httpx.Response, url: str, budget: _Budget) -> None:
        if time.monotonic() > budget.deadline:
            raise _DeadlinePassed(
                f"the model server at {url} did not finish its answer within {budget.deadline_s:g} s; "
                "raise --deadline (GAEA_ANSWER_DEADLINE) or check the server"
            )
        if response.num_bytes_downloaded > budget.max_raw_bytes:
            raise BackendError(
                f"the model server at {url} sent more than {budget.max_raw_bytes:,} bytes for an answer of at most "
                f"{budget.max_tokens} tokens; it does not honour max_tokens"
            )

    def _raise_for_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        if is_retryable_status(status):
            raise RetryableStatus.of(response, _server_message(response))
        hint = "" if status != 404 or "/v1" in self.base_url else " (does the base URL need to end in /v1?)"
        raise BackendError(
            f"the model server at {url} refused the request (HTTP {status}): {_server_message(response)}{hint}"
        )

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

    # ------------------------------------------------------------------------------------------ streams

    def _answer_from_first_piece(
        self, url: str, payload: dict[str, Any], budget: _Budget
    ) -> tuple[httpx.Response, Iterator[str]]:
        """Ask, and read the answer up to its first piece, so that a stream cut before it can be retried."""
        response = self._send("POST", url, budget, payload)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            # A server that ignores "stream": one whole chat completion.
            content = self._content_of(self._read_json(response, url, budget))
            return response, iter([content] if content else [])
        pieces = self._pieces_from_sse(response, url, budget)
        try:
            first = next(pieces, None)
        except BaseException:
            response.close()
            raise
        return response, iter(()) if first is None else itertools.chain([first], pieces)

    def _pieces_from_sse(self, response: httpx.Response, url: str, budget: _Budget) -> Iterator[str]:
        """Text deltas of an SSE chat-completion stream, until `data: [DONE]` or the answer's caps.

        A stream that ends after a `finish_reason` but without `[DONE]` (as `transformers serve` sends
        them) is complete too; one that ends with neither was cut.
        """
        saw_event = finished = False
        pieces = text_bytes = 0
        for line in self._lines(response, url, budget):
            if not line.startswith("data:"):
                continue  # keep-alive comments (": ping"), event names, blank lines between events
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            saw_event = True
            piece, finish_reason = self._delta_of(data, url)
            finished = finished or finish_reason
            if not piece:
                continue
            yield piece
            pieces += 1
            text_bytes += len(piece.encode("utf-8"))
            if pieces >= budget.max_pieces or text_bytes >= budget.max_text_bytes:
                log.warning("the model server at %s sent more than the %d tokens asked for; answer cut there",
                            url, budget.max_tokens)
                return
        if finished:
            return
        what = "broke off its answer (the stream ended before data: [DONE])" if saw_event else (
            "sent an empty stream (no 'data:' events, no data: [DONE])"
        )
        raise _CutStream(f"the model server at {url} {what}")

    def _lines(self, response: httpx.Response, url: str, budget: _Budget) -> Iterator[str]:
        # Split here rather than with iter_lines(), so that the budget is checked on every chunk that
        # arrives, also when a server trickles bytes without ever ending a line.
        pending = ""
        for text in response.iter_text():
            self._check_budget(response, url, budget)
            *lines, pending = (pending + text).split("\n")
            for line in lines:
                yield line.rstrip("\r")
        if pending:
            yield pending.rstrip("\r")

    def _delta_of(self, data: str, url: str) -> tuple[str, bool]:
        """The text of one stream event, and whether it says the answer is finished (a finish_reason)."""
        try:
            event = json.loads(data)
        except ValueError as error:
            raise BackendError(
                f"the model server at {url} sent a stream event that is not JSON: {_snippet(data)!r}"
            ) from error
        if isinstance(event, dict) and event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise BackendError(f"the model server at {url} failed while answering: {_snippet(str(message))}")
        try:
            choices = event["choices"]
            if not choices:  # a usage-only event at the end of some streams
                return "", False
            choice = choices[0]
            return choice.get("delta", {}).get("content") or "", bool(choice.get("finish_reason"))
        except (KeyError, TypeError, AttributeError) as error:
            raise BackendError(
                f"the model server at {url} sent a stream event without choices[0].delta: {_snippet(data)}"
            ) from error
