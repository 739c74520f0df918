"""The ranker interface: ``rank(image, candidates) -> candidates with scores, best first``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from gaea.types import Candidate, Neighbor

RANKERS = ("median", "g3", "lmm", "trained")


class Ranking(list):
    """Candidates best first, each with its ``rank_score``; ``ranker`` names who ranked them (``lmm
    (fallback median)`` when a ranker had to hand over)."""

    def __init__(self, candidates: Sequence[Candidate], ranker: str):
        super().__init__(candidates)
        self.ranker = ranker


class Ranker(Protocol):
    name: str

    def rank(self, image: Any, candidates: Sequence[Candidate], *, embedding: np.ndarray | None = None,
             support: Sequence[Neighbor] = ()) -> Ranking:
        """The candidates best first with their ``rank_score``.

        ``image`` is the photo (a PIL image; None where a ranker needs only ``embedding``, the photo's
        embedding by the encoder of the gallery / location model, when it is already computed); ``support``
        are gallery neighbours that may weigh in without being candidates (the median's).
        """
        ...


def ranked(candidates: Sequence[Candidate], scores: Sequence[float], ranker: str) -> Ranking:
    """The candidates with their scores, sorted best (highest) first; ties keep the pool's order."""
    scores = [float(score) for score in scores]
    if len(scores) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    return Ranking([replace(candidates[i], rank_score=scores[i]) for i in order], ranker)


def make_ranker(name: str, *, backend: Any = None, location_model: Any = None, embedder: Any = None,
                gallery: Any = None, model_dir: Any = None, device: str | None = None) -> Ranker:
    """The ranker called ``name`` (one of `RANKERS`), built from the parts it needs.

    Raises
    ------
    ConfigError
        When a part it needs is missing: g3 a geoclip location model, lmm a backend, trained its folder.
    """
    from gaea.errors import ConfigError

    if name == "median":
        from gaea.ranking.median import MedianRanker

        return MedianRanker()
    if name == "g3":
        if location_model is None:
            raise ConfigError("the g3 ranker compares the photo with each candidate in a geoclip location model: "
                              "give one (--location-model)")
        from gaea.ranking.g3 import G3Ranker

        return G3Ranker(location_model, embedder)
    if name == "lmm":
        if backend is None:
            raise ConfigError("the lmm ranker asks a model: give it a backend")
        from gaea.ranking.lmm import LMMRanker

        return LMMRanker(backend, gallery=gallery)
    if name == "trained":
        if model_dir is None:
            raise ConfigError("the trained ranker needs its folder (made by `gaea finetune train --task rank`)")
        from gaea.ranking.trained import TrainedRanker

        return TrainedRanker.load(model_dir, device=device, gallery=gallery)
    raise ConfigError(f"unknown ranker {name!r} (known: {', '.join(RANKERS)})")
