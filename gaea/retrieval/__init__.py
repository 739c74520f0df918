"""Retrieval for geolocation: image embeddings, a FAISS vector index, a geotagged gallery on disk and
a retriever of similar and dissimilar neighbours (Img2Loc / G3 style)."""

from gaea.retrieval.embedder import Embedder, l2_normalise
from gaea.retrieval.gallery import Gallery, GalleryItem, build_gallery, iter_gallery_items, read_exif_gps
from gaea.retrieval.index import INDEX_KINDS, SearchParams, VectorIndex
from gaea.retrieval.retriever import Retriever

__all__ = [
    "INDEX_KINDS",
    "Embedder",
    "Gallery",
    "GalleryItem",
    "Retriever",
    "SearchParams",
    "VectorIndex",
    "build_gallery",
    "iter_gallery_items",
    "l2_normalise",
    "read_exif_gps",
]
