"""Retrieval for geolocation: image embeddings, a FAISS vector index, a geotagged gallery on disk and
a retriever of similar and dissimilar neighbours (Img2Loc / G3 style)."""

from gaea.retrieval.embedder import Embedder, l2_normalise
from gaea.retrieval.gallery import Gallery, build_gallery, merge_galleries
from gaea.retrieval.index import INDEX_KINDS, SearchParams, VectorIndex
from gaea.retrieval.retriever import Retriever

__all__ = [
    "INDEX_KINDS",
    "Embedder",
    "Gallery",
    "Retriever",
    "SearchParams",
    "VectorIndex",
    "build_gallery",
    "l2_normalise",
    "merge_galleries",
]
