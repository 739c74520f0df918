"""G3's selection (Jia et al., NeurIPS 2024): the candidate whose location embedding is most similar to the
photo's image embedding, both from one GeoCLIP-style model (`gaea.location.GeoCLIPModel`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gaea.errors import ConfigError
from gaea.ranking.base import Ranking, ranked
from gaea.types import Candidate, Neighbor


class G3Ranker:
    """Cosine of ``model.encode_images(embedding)`` and ``model.encode_locations(candidate)``.

    ``embedder`` encodes the photo when `rank` is given no embedding; it must be the encoder the model was
    trained on (the Assistant checks that)."""

    name = "g3"

    def __init__(self, model: Any, embedder: Any = None):
        if not (hasattr(model, "encode_images") and hasattr(model, "encode_locations")):
            raise ConfigError(f"the g3 ranker needs a geoclip location model (image and location encoders); "
                              f"this one is {getattr(model, 'kind', type(model).__name__)!r}")
        self.model = model
        self.embedder = embedder

    def rank(self, image: Any, candidates: Sequence[Candidate], *, embedding: np.ndarray | None = None,
             support: Sequence[Neighbor] = ()) -> Ranking:
        if not candidates:
            return Ranking([], self.name)
        if embedding is None:
            if self.embedder is None or image is None:
                raise ConfigError("the g3 ranker needs the photo's embedding, or an embedder and the photo")
            embedding = self.embedder.embed_one(image)
        image_vector = self.model.encode_images(embedding)[0]
        places = self.model.encode_locations([c.lat for c in candidates], [c.lon for c in candidates])
        return ranked(candidates, places @ image_vector, self.name)
