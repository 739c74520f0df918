"""The candidate pool: candidate places for a photo gathered from every configured source.

Sources (the names `--candidates` takes) and the ``Candidate.source`` their candidates carry:

- ``lmm``: the vision-language model's answers (``lmm-sample``), with the place it named and its reasoning;
- ``neighbours``: the gallery's most similar photos (``neighbour``), each with its own photo as evidence;
- ``location-model``: a location model's top places (its kind: ``geoclip``, ``s2-beam``, ``shdd``, ...).

Candidates within `DEDUPE_KM` of an earlier one are merged into it (the earlier keeps its source and gains
the later one's photos), so a ranker never weighs the same place twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from functools import cached_property

import numpy as np

from gaea.errors import ConfigError
from gaea.geo.distance import haversine_km, unit_vectors
from gaea.types import Candidate, Neighbor, Prediction

CANDIDATE_SOURCES = ("lmm", "neighbours", "location-model")
LMM_SAMPLE = "lmm-sample"
NEIGHBOUR = "neighbour"
#: Candidates closer than this are one place (km): street scale, below the finest accuracy threshold.
DEDUPE_KM = 1.0


def parse_sources(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"lmm,neighbours"`` (or a list of names) as a tuple of known source names, in the order given.

    Raises
    ------
    ConfigError
        On an unknown or repeated name, or none at all.
    """
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text) if name.strip()]
    unknown = [name for name in names if name not in CANDIDATE_SOURCES]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"candidate sources {','.join(names) or '(none)'}: give distinct names among "
                          f"{', '.join(CANDIDATE_SOURCES)}, comma-separated")
    return tuple(names)


def sample_candidate(prediction: Prediction) -> Candidate | None:
    """An LMM answer as a candidate (None when it named no usable place)."""
    if prediction.point is None:
        return None
    return Candidate(prediction.lat, prediction.lon, 1.0, LMM_SAMPLE, prediction.location, prediction.reasoning)


def neighbour_candidate(neighbour: Neighbor) -> Candidate:
    """A similar gallery photo as a candidate, its photo as the evidence."""
    return Candidate(neighbour.lat, neighbour.lon, neighbour.similarity, NEIGHBOUR, neighbour.place,
                     photos=(neighbour,))


def gather_candidates(samples: Sequence[Prediction] = (), neighbours: Sequence[Neighbor] = (),
                      places: Sequence[Candidate] = (), *, radius_km: float = DEDUPE_KM) -> list[Candidate]:
    """The pool of one photo: LMM samples, then neighbours, then location-model places, merged within
    ``radius_km``."""
    pool = [c for c in map(sample_candidate, samples) if c is not None]
    pool += [neighbour_candidate(n) for n in neighbours]
    pool += list(places)
    return deduplicate(pool, radius_km=radius_km)


def deduplicate(candidates: Sequence[Candidate], *, radius_km: float = DEDUPE_KM) -> list[Candidate]:
    """Candidates with each one within ``radius_km`` of an earlier one merged into that one."""
    if not candidates:
        return []
    lat = np.array([c.lat for c in candidates])
    lon = np.array([c.lon for c in candidates])
    close = np.asarray(haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])) <= radius_km
    kept: list[int] = []
    merged: dict[int, list[Neighbor]] = {}
    for i in range(len(candidates)):
        home = next((k for k in kept if close[k, i]), None)
        if home is None:
            kept.append(i)
            merged[i] = list(candidates[i].photos)
        else:
            merged[home] += [p for p in candidates[i].photos if p not in merged[home]]
    return [replace(candidates[i], photos=tuple(merged[i])) for i in kept]


class GalleryPlaces:
    """The gallery photos nearest a place on the ground (a KD-tree of the gallery's unit vectors): the
    evidence GeoRanker shows beside each candidate."""

    def __init__(self, gallery):
        self.gallery = gallery

    @cached_property
    def _tree(self):
        from scipy.spatial import cKDTree

        coords = np.asarray(self.gallery.coords, dtype=np.float64)
        return cKDTree(unit_vectors(coords[:, 0], coords[:, 1]))

    def near(self, lat: float, lon: float, k: int) -> list[Neighbor]:
        """The ``k`` gallery photos nearest (lat, lon), nearest first; their ``similarity`` is 0 (unknown)."""
        k = min(k, len(self.gallery))
        if k < 1:
            return []
        _, rows = self._tree.query(unit_vectors(np.array([lat]), np.array([lon]))[0], k=k)
        return [self.gallery.neighbor(int(row), 0.0) for row in np.atleast_1d(rows)]

    def with_photos(self, candidates: Sequence[Candidate], k: int, *, exclude: Collection[str] = ()) -> list[Candidate]:
        """Each candidate with up to ``k`` photos as evidence: its own, then the gallery photos nearest it;
        never a photo whose id is in ``exclude``."""
        out = []
        for c in candidates:
            photos = list(c.photos[:k])
            for photo in self.near(c.lat, c.lon, k + len(photos) + len(exclude)):
                if len(photos) >= k:
                    break
                if photo.id not in exclude and all(p.id != photo.id for p in photos):
                    photos.append(photo)
            out.append(replace(c, photos=tuple(photos)))
        return out


def distance_label(candidate: Candidate, photo: Neighbor) -> str:
    """How far a photo is from a candidate, for prompts ("0.4 km")."""
    km = float(haversine_km(candidate.lat, candidate.lon, photo.lat, photo.lon))
    return f"{km:.1f} km" if km < 100 else f"{km:,.0f} km"

