"""Zero-shot GeoRanker-style ranking by any backend: the photo and a numbered list of the candidates with
their evidence (`gaea.prompts.rank_prompt`); the reply must hold a JSON ``{"ranking": [...]}``, read
strictly by `gaea.jsontext`. An unreadable reply hands the pool to a fallback ranker (the median)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gaea import prompts
from gaea.jsontext import last_object_with
from gaea.ranking.base import Ranker, Ranking, ranked
from gaea.ranking.candidates import GalleryPlaces
from gaea.ranking.median import MedianRanker
from gaea.types import Candidate, GenerationParams, Message, Neighbor

log = logging.getLogger(__name__)


def parse_ranking(reply: str, count: int) -> list[int] | None:
    """The 0-based candidate order a reply gives for ``count`` numbered candidates, or None when it gives no
    valid one: the last strict-JSON object with a ``ranking`` list of distinct integers in 1..count."""
    found = last_object_with(reply, ("ranking",), strict=True)
    order = found.get("ranking") if found else None
    if not isinstance(order, list) or not order:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= count for n in order):
        return None
    if len(set(order)) != len(order):
        return None
    return [n - 1 for n in order]


class LMMRanker:
    """Ranking by ``backend``; candidates it leaves out follow in the fallback's order.

    ``gallery`` (optional) adds its photos nearest each candidate as evidence (``photos_per_candidate``)."""

    name = "lmm"

    def __init__(self, backend: Any, *, fallback: Ranker | None = None, gallery: Any = None,
                 photos_per_candidate: int = 3, params: GenerationParams | None = None):
        self.backend = backend
        self.fallback = fallback or MedianRanker()
        self.places = GalleryPlaces(gallery) if gallery is not None else None
        self.photos_per_candidate = photos_per_candidate
        self.params = params or GenerationParams(max_new_tokens=256, temperature=0.0)

    def rank(self, image: Any, candidates: Sequence[Candidate], *, embedding: np.ndarray | None = None,
             support: Sequence[Neighbor] = ()) -> Ranking:
        if not candidates:
            return Ranking([], self.name)
        shown = self.places.with_photos(candidates, self.photos_per_candidate) if self.places else list(candidates)
        prompt = prompts.rank_prompt(shown, photos_per_candidate=self.photos_per_candidate)
        messages = [Message.user(prompt, images=[image] if image is not None else [])]
        reply = self.backend.generate(messages, params=self.params)
        backup = self.fallback.rank(image, shown, embedding=embedding, support=support)
        order = parse_ranking(reply, len(shown))
        if order is None:
            log.info("the ranking reply is unreadable, ranked by %s instead: %r", self.fallback.name, reply[:200])
            return Ranking(backup, f"{self.name} (fallback {backup.ranker})")
        # Listed candidates first, in the reply's order; the rest after them, in the fallback's order.
        unranked = [replace(c, rank_score=None) for c in backup]
        final = order + [shown.index(c) for c in unranked if shown.index(c) not in order]
        scores = np.empty(len(shown))
        scores[final] = np.arange(len(shown), 0, -1, dtype=float)
        return ranked(shown, scores, self.name)
