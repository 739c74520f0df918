"""Similar and dissimilar gallery neighbours of a photo, with their coordinates and place names."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from gaea.errors import ConfigError
from gaea.retrieval.gallery import Gallery
from gaea.types import Neighbor

log = logging.getLogger(__name__)


class Retriever:
    """Searches a :class:`Gallery` with an embedder's query vectors.

    Parameters
    ----------
    gallery
        The gallery (or the path of a gallery folder).
    embedder
        Encodes query photos; must be the encoder the gallery was built with (same dimension). None
        means load the encoder named in the gallery's manifest.
    """

    def __init__(self, gallery: Gallery | str | Path, embedder=None):
        self.gallery = gallery if isinstance(gallery, Gallery) else Gallery.load(gallery)
        if embedder is None:
            from gaea.retrieval.embedder import Embedder

            embedder = Embedder(self.gallery.encoder or None)
        if embedder.dim != self.gallery.dim:
            raise ConfigError(
                f"encoder {embedder.model_name} gives {embedder.dim}-dimensional embeddings but the gallery at "
                f"{self.gallery.root} holds {self.gallery.dim}-dimensional ones (built with "
                f"{self.gallery.encoder or 'an unknown encoder'}); use the same encoder"
            )
        self.embedder = embedder

    def embed(self, image: str | Path | Image.Image) -> np.ndarray:
        """The query embedding of a photo."""
        return self.embedder.embed_one(image)

    def search(self, embedding: np.ndarray, k: int) -> list[Neighbor]:
        """The ``k`` gallery photos most similar to ``embedding``, most similar first."""
        scores, rows = self.gallery.index.search(embedding, min(k, len(self.gallery)))
        return self._neighbors(scores[0], rows[0])

    def farthest(self, embedding: np.ndarray, k: int) -> list[Neighbor]:
        """The ``k`` gallery photos least similar to ``embedding``, least similar first."""
        scores, rows = self.gallery.index.search_dissimilar(embedding, min(k, len(self.gallery)))
        return self._neighbors(scores[0], rows[0])

    def neighbours(self, image: str | Path | Image.Image, k_similar: int = 16,
                   k_dissimilar: int = 16) -> tuple[list[Neighbor], list[Neighbor]]:
        """(similar, dissimilar) neighbours of a photo; either list is empty when its k is 0."""
        embedding = self.embed(image)
        similar = self.search(embedding, k_similar) if k_similar > 0 else []
        dissimilar = self.farthest(embedding, k_dissimilar) if k_dissimilar > 0 else []
        return similar, dissimilar

    def _neighbors(self, scores: np.ndarray, rows: np.ndarray) -> list[Neighbor]:
        return [self.gallery.neighbor(int(row), float(score)) for score, row in zip(scores, rows, strict=True)
                if row >= 0]
