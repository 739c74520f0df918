"""Several servers of one model (replicas) behind one backend: each request goes to the replica with the
fewest requests in flight, so a slow or busy replica gets less work and every replica stays busy.

Built by `gaea.commands.common.backend_from_args` when ``--base-url`` is given more than once
(``gaea eval bench --base-url http://a:8000/v1 --base-url http://b:8000/v1``). A replica that cannot be
reached at all is skipped for the rest of the run while another one answers; errors of the answer itself
(its limits, a broken stream) are the replica's own and are raised as they are.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator, Sequence

from gaea.errors import BackendUnreachableError, ConfigError
from gaea.models.backends import Backend
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)


class Replicas:
    """One Backend over ``replicas`` that serve the same model (the same ``name``)."""

    def __init__(self, replicas: Sequence[Backend]) -> None:
        if not replicas:
            raise ConfigError("replicas: give at least one backend")
        names = sorted({replica.name for replica in replicas})
        if len(names) > 1:
            raise ConfigError(f"the --base-url servers serve different models ({', '.join(names)}): replicas must "
                              "serve one model; name it with --served-model")
        self.replicas = list(replicas)
        self.name = replicas[0].name
        self._in_flight = [0] * len(self.replicas)
        self._down: set[int] = set()
        self._turn = itertools.count()  # breaks ties in turn, so that idle replicas share the first requests
        self._lock = threading.Lock()

    def _take(self, excluded: set[int]) -> int:
        with self._lock:
            turn = next(self._turn)
            candidates = [i for i in range(len(self.replicas)) if i not in excluded and i not in self._down]
            if not candidates:
                candidates = [i for i in range(len(self.replicas)) if i not in excluded]
            chosen = min(candidates, key=lambda i: (self._in_flight[i], (i - turn) % len(self.replicas)))
            self._in_flight[chosen] += 1
            return chosen

    def _give_back(self, number: int, *, reached: bool) -> None:
        with self._lock:
            self._in_flight[number] -= 1
            if reached:
                self._down.discard(number)
            elif number not in self._down:
                self._down.add(number)
                log.warning("model replica %d of %d cannot be reached; the others take its requests",
                            number + 1, len(self.replicas))

    def generate(self, messages: list[Message], *, params: GenerationParams | None = None) -> str:
        tried: set[int] = set()
        while True:
            number = self._take(tried)
            try:
                answer = self.replicas[number].generate(messages, params=params)
            except BackendUnreachableError:
                self._give_back(number, reached=False)
                tried.add(number)
                if len(tried) == len(self.replicas):
                    raise
                continue
            self._give_back(number, reached=True)
            return answer

    def stream(self, messages: list[Message], *, params: GenerationParams | None = None) -> Iterator[str]:
        # A stream is not moved to another replica: its first pieces may already be shown.
        number = self._take(set())
        reached = True
        try:
            yield from self.replicas[number].stream(messages, params=params)
        except BackendUnreachableError:
            reached = False
            raise
        finally:
            self._give_back(number, reached=reached)

    def close(self) -> None:
        for replica in self.replicas:
            close = getattr(replica, "close", None)
            if close is not None:
                close()
