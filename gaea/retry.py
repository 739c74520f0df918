"""Retrying HTTP calls (model servers, Overpass): which failures are worth another try, how long a server
asks us to wait (Retry-After, in seconds or as an HTTP date), and exponential backoff with jitter."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Answers that say "not now" rather than "never": rate limiting and server or gateway trouble. 501 (not
#: implemented) and 505 (HTTP version) would be the same on every try.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryableStatus(Exception):
    """An HTTP answer worth asking again (see RETRYABLE_STATUSES), with the delay the server asked for."""

    def __init__(self, status: int, message: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s

    @classmethod
    def of(cls, response: httpx.Response, message: str = "") -> RetryableStatus:
        """The error for a retryable `response`, with the delay its Retry-After header asks for."""
        return cls(response.status_code, message, retry_after_s(response.headers.get("retry-after")))


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a Retry-After header value asks for (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient(error: BaseException) -> bool:
    """A retryable answer, a timeout or a dropped connection; not a URL that no try could ever reach."""
    if isinstance(error, httpx.UnsupportedProtocol):
        return False
    return isinstance(error, RetryableStatus | httpx.TransportError)


def requested_delay(error: BaseException) -> float | None:
    """The delay a RetryableStatus's server asked for, None for any other error."""
    return error.retry_after_s if isinstance(error, RetryableStatus) else None


def retry_call(
    fn: Callable[[], T],
    *,
    retries: int,
    is_retryable: Callable[[BaseException], bool] = is_transient,
    base_delay_s: float = 1.0,
    max_delay_s: float = 30.0,
    delay_for: Callable[[BaseException], float | None] = requested_delay,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`; on a retryable error wait base * 2**attempt (with jitter, capped) and try again.

    `delay_for(error)` may return a server-requested delay (a Retry-After header) that overrides the
    computed one, capped at `max_delay_s` too. The last error is re-raised once `retries` retries are
    spent, or when the wait would end after `deadline` (a `time.monotonic()` instant).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except BaseException as error:
            if attempt >= retries or not is_retryable(error):
                raise
            delay = min(max_delay_s, base_delay_s * 2**attempt) * (0.5 + random.random() / 2)
            requested = delay_for(error)
            if requested is not None:
                delay = min(max_delay_s, requested)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise
            log.warning("attempt %d failed (%s); retrying in %.1f s", attempt + 1, error, delay)
            sleep(delay)
            attempt += 1
