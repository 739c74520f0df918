"""Retrying a call with exponential backoff and jitter (HTTP model servers, Overpass)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def retry_call(
    fn: Callable[[], T],
    *,
    retries: int,
    is_retryable: Callable[[BaseException], bool],
    base_delay_s: float = 1.0,
    max_delay_s: float = 30.0,
    delay_for: Callable[[BaseException], float | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`; on a retryable error wait base * 2**attempt (with jitter, capped) and try again.

    `delay_for(error)` may return a server-requested delay (a Retry-After header) that overrides
    the computed one. The last error is re-raised once `retries` retries are spent.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except BaseException as error:
            if attempt >= retries or not is_retryable(error):
                raise
            delay = min(max_delay_s, base_delay_s * 2**attempt) * (0.5 + random.random() / 2)
            requested = delay_for(error) if delay_for else None
            if requested is not None:
                delay = min(max_delay_s, requested)
            log.warning("attempt %d failed (%s); retrying in %.1f s", attempt + 1, error, delay)
            sleep(delay)
            attempt += 1
