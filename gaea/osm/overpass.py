"""OpenStreetMap features from an Overpass API server, one request per tile of nearby points.

Points that fall in the same ``tile_deg`` grid cell share one bounding-box query (`gaea.osm.query`);
the answer (fetched politely and cached on disk by `gaea.osm._http`, read into features by
`gaea.osm.convert`) is indexed and filtered per point by great-circle distance, exactly as for a
local extract.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import overpy
from tqdm.auto import tqdm

from gaea.errors import BadInputError, ConfigError
from gaea.osm._http import OverpassHTTP
from gaea.osm.convert import features_from_result, parse_answer
from gaea.osm.features import OSMFeature, validate_keys
from gaea.osm.local import LocalOSMSource, check_radius, points_to_arrays
from gaea.osm.query import BBox, bbox_around, build_query, group_by_tile
from gaea.settings import get_settings
from gaea.types import GeoPoint

__all__ = ["MAX_RADIUS_M", "BBox", "OverpassSource", "bbox_around", "build_query", "features_from_result",
           "group_by_tile"]

log = logging.getLogger(__name__)

#: Largest radius one Overpass query may cover; larger areas overload public servers.
MAX_RADIUS_M = 50_000.0
#: Parsed and indexed answers kept in memory per source (least recently used dropped first).
TILES_IN_MEMORY = 64


class OverpassSource:
    """OSM features fetched from an Overpass API endpoint.

    Parameters
    ----------
    url
        Interpreter endpoint; None uses ``gaea.settings`` ``overpass_url``.
    cache_dir
        Folder of cached answers; None uses ``<settings cache_dir>/overpass``.
    timeout_s
        Server-side time limit written into each query as ``[timeout:..]``.
    min_interval_s
        Least time between the starts of two requests (politeness to public servers).
    retries
        Retries after a retryable failure before an :class:`OSMError` is raised.
    tile_deg
        Grid cell size in degrees: points in one cell share one request.
    user_agent
        Sent with every request; None uses ``gaea.settings`` ``user_agent``.
    http_timeout_s
        Client-side connect/read timeout per attempt; None allows ``timeout_s`` plus 15 s.
    backoff_s, max_backoff_s
        First retry delay (doubled per attempt, with jitter) and the cap on any delay, ``Retry-After`` included.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        timeout_s: int = 180,
        min_interval_s: float = 1.0,
        retries: int = 5,
        tile_deg: float = 0.05,
        user_agent: str | None = None,
        http_timeout_s: float | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ):
        settings = get_settings()
        self.url = url or settings.overpass_url
        _check_config(
            url=self.url, timeout_s=timeout_s, min_interval_s=min_interval_s, retries=retries, tile_deg=tile_deg
        )
        self.cache_dir = Path(cache_dir) if cache_dir is not None else settings.cache_dir / "overpass"
        self.timeout_s = int(timeout_s)
        self.tile_deg = float(tile_deg)
        self.user_agent = user_agent or settings.user_agent
        self.http_timeout_s = float(http_timeout_s) if http_timeout_s is not None else self.timeout_s + 15.0
        self._http = OverpassHTTP(
            self.url, cache_dir=self.cache_dir, user_agent=self.user_agent, http_timeout_s=self.http_timeout_s,
            min_interval_s=float(min_interval_s), retries=int(retries), backoff_s=float(backoff_s),
            max_backoff_s=float(max_backoff_s),
        )
        self.name = f"overpass:{self._http.shown_url}"
        self._tiles: OrderedDict[str, LocalOSMSource] = OrderedDict()

    @property
    def requests_sent(self) -> int:
        """Requests actually sent (attempts included), for logs and tests."""
        return self._http.requests_sent

    def close(self) -> None:
        """Close the HTTP connection pool (the source reopens it if used again)."""
        self._http.close()

    def __getstate__(self) -> dict:
        # A worker process parses and indexes its own tiles.
        return {**self.__dict__, "_tiles": OrderedDict()}

    def __enter__(self) -> OverpassSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def features(
        self, point: GeoPoint, radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[OSMFeature]:
        """Features within `radius_m` metres of `point`, nearest first (one request at most)."""
        return self.features_many([point], radius_m, keys=keys)[0]

    def features_many(
        self, points: Sequence[GeoPoint], radius_m: float = 1000.0, *, keys: Iterable[str] | None = None
    ) -> list[list[OSMFeature]]:
        """:meth:`features` for each point; points in one ``tile_deg`` cell cost one request together."""
        check_radius(radius_m)
        if radius_m > MAX_RADIUS_M:
            raise BadInputError(f"radius_m={radius_m} is too large for Overpass; the limit is {MAX_RADIUS_M:.0f} m")
        wanted = validate_keys(keys)
        lats, lons = points_to_arrays(points)
        results: list[list[OSMFeature]] = [[] for _ in points]
        tiles = group_by_tile(lats, lons, self.tile_deg)
        for members in tqdm(tiles, desc="Overpass tiles", unit="tile", disable=len(tiles) < 2):
            bbox = bbox_around(lats[members], lons[members], radius_m)
            query = build_query(bbox, keys=wanted, timeout_s=self.timeout_s)
            found = self._tile_source(query).features_many([points[i] for i in members], radius_m, keys=wanted)
            for i, features in zip(members, found, strict=True):
                results[i] = features
        return results

    def _tile_source(self, query: str) -> LocalOSMSource:
        # Kept in memory too, so that asking again about the same area skips parsing and indexing.
        tile = self._tiles.pop(query, None)
        if tile is None:
            tile = LocalOSMSource.from_features(self.query_features(query), name=self.name)
        self._tiles[query] = tile
        while len(self._tiles) > TILES_IN_MEMORY:
            self._tiles.popitem(last=False)
        return tile

    def query_features(self, query: str) -> list[OSMFeature]:
        """Run an Overpass QL query (cached) and normalize its elements; distances are left at 0."""
        return list(features_from_result(self.query(query)))

    def query(self, query: str) -> overpy.Result:
        """Run an Overpass QL query, from the disk cache when this endpoint answered it before.

        Raises
        ------
        OSMError
            The server kept failing, refused the query, or answered with an error remark.
        """
        cached = self._http.cached(query)
        if cached is not None:
            log.debug("Overpass cache hit %s", self.cache_path(query).name)
            return self._parse(cached)
        answer = self._http.fetch(query)
        result = self._parse(answer)
        self._http.store(query, answer)
        return result

    def cache_path(self, query: str) -> Path:
        """Where the answer to `query` from this endpoint is cached (``.json``; ``.xml`` for XML answers)."""
        return self._http.cache_path(query)

    def _parse(self, answer: tuple[bytes, str]) -> overpy.Result:
        body, content_type = answer
        return parse_answer(body, content_type, where=f"Overpass at {self._http.shown_url}", timeout_s=self.timeout_s)


def _check_config(*, url: str, timeout_s: int, min_interval_s: float, retries: int, tile_deg: float) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Overpass url {url!r} must be an http:// or https:// address")
    if timeout_s < 1:
        raise ConfigError(f"OverpassSource timeout_s must be at least 1 second, got {timeout_s!r}")
    if min_interval_s < 0:
        raise ConfigError(f"OverpassSource min_interval_s must not be negative, got {min_interval_s!r}")
    if retries < 0:
        raise ConfigError(f"OverpassSource retries must not be negative, got {retries!r}")
    if not 0 < tile_deg <= 10:
        raise ConfigError(f"OverpassSource tile_deg must be in (0, 10] degrees, got {tile_deg!r}")
