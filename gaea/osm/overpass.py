"""OpenStreetMap features from an Overpass API server, one request per tile of nearby points.

Points that fall in the same ``tile_deg`` grid cell share one bounding-box query (the points'
box grown by the radius); the answer is indexed and filtered per point by great-circle
distance, exactly as for a local extract. Answers are cached on disk by a hash of endpoint and
query, so a repeated query makes no request. Requests are paced (``min_interval_s``), carry an
identifying User-Agent and ``[timeout:..]``, and are retried with exponential backoff on 429,
502-504, timeouts and dropped connections, honouring ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import overpy
from overpy import exception as overpy_errors
from shapely.geometry import LineString, MultiLineString, Polygon
from tqdm.auto import tqdm

from gaea.errors import BadInputError, ConfigError, OSMError
from gaea.io import atomic_write_bytes
from gaea.osm._geometry import representative_lat_lon
from gaea.osm._spatial import EARTH_RADIUS_M
from gaea.osm.features import (
    CATEGORY_KEYS,
    NOISE_VALUES,
    SPECIAL_BUILDINGS,
    OSMFeature,
    feature_from_element,
    validate_keys,
)
from gaea.osm.local import LocalOSMSource, check_radius, points_to_arrays
from gaea.osm.sanitize import sanitize_text
from gaea.retry import retry_call
from gaea.settings import get_settings
from gaea.types import GeoPoint

log = logging.getLogger(__name__)

#: Largest radius one Overpass query may cover; larger areas overload public servers.
MAX_RADIUS_M = 50_000.0
#: Query boxes are rounded outward to this grid (degrees) so that nearby queries repeat, and hit the cache.
BBOX_SNAP_DEG = 0.005
#: Parsed and indexed answers kept in memory per source (least recently used dropped first).
TILES_IN_MEMORY = 64
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_JSON_TYPE = "application/json"
_XML_TYPE = "application/osm3s+xml"
_XML_REMARK = re.compile(r"<remark>(?P<msg>[^<>]*)</remark>")
_HTML_ERROR = re.compile(r"<p><strong[^>]*>(?P<msg>.*?)</p>", re.S)
_HTML_TAG = re.compile(r"<[^>]*?>")

BBox = tuple[float, float, float, float]  # south, west, north, east


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
        self.name = f"overpass:{self.url}"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else settings.cache_dir / "overpass"
        self.timeout_s = int(timeout_s)
        self.min_interval_s = float(min_interval_s)
        self.retries = int(retries)
        self.tile_deg = float(tile_deg)
        self.user_agent = user_agent or settings.user_agent
        self.http_timeout_s = float(http_timeout_s) if http_timeout_s is not None else self.timeout_s + 15.0
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        #: Requests actually sent (attempts included), for logs and tests.
        self.requests_sent = 0
        self._client: httpx.Client | None = None
        self._pace_lock = threading.Lock()
        self._last_request_at = -math.inf
        self._tiles: OrderedDict[str, LocalOSMSource] = OrderedDict()

    def close(self) -> None:
        """Close the HTTP connection pool (the source reopens it if used again)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self) -> dict:
        # Worker processes get their own connection pool and pacing lock.
        state = dict(self.__dict__)
        state.update(_client=None, _pace_lock=None, _tiles=OrderedDict())
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _pace_lock=threading.Lock())

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
        path = self.cache_path(query)
        cached = _read_cache(path)
        if cached is not None:
            log.debug("Overpass cache hit %s", path.name)
            return self._parse(*cached)
        body, content_type = self._fetch(query)
        result = self._parse(body, content_type)
        atomic_write_bytes(path.with_suffix(".xml" if content_type == _XML_TYPE else ".json"), body)
        return result

    def cache_path(self, query: str) -> Path:
        """Where the answer to `query` from this endpoint is cached (``.json``; ``.xml`` for XML answers)."""
        key = hashlib.sha256(f"{self.url}\n{query}".encode()).hexdigest()
        return self.cache_dir / f"{key}.json"

    def _fetch(self, query: str) -> tuple[bytes, str]:
        try:
            return retry_call(
                lambda: self._post_once(query),
                retries=self.retries,
                is_retryable=_is_retryable,
                base_delay_s=self.backoff_s,
                max_delay_s=self.max_backoff_s,
                delay_for=_retry_after_s,
            )
        except (_RetryableStatus, httpx.HTTPError) as error:
            raise OSMError(
                f"Overpass request to {self.url} failed after {self.retries + 1} attempts: {_describe(error)}"
            ) from error

    def _post_once(self, query: str) -> tuple[bytes, str]:
        client = self._http()
        self._wait_for_turn()
        self.requests_sent += 1
        response = client.post(self.url, data={"data": query})
        if response.status_code == 200:
            return response.content, response.headers.get("content-type", "").split(";")[0].strip()
        if response.status_code in RETRYABLE_STATUS:
            raise _RetryableStatus(response.status_code, response.headers.get("retry-after"))
        raise OSMError(_http_error_message(self.url, response))

    def _wait_for_turn(self) -> None:
        with self._pace_lock:
            wait = self._last_request_at + self.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request_at = time.monotonic()

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                headers={"User-Agent": self.user_agent},
                timeout=httpx.Timeout(self.http_timeout_s),
                follow_redirects=True,
            )
        return self._client

    def _parse(self, body: bytes, content_type: str) -> overpy.Result:
        api = overpy.Overpass(url=self.url)
        if content_type == _JSON_TYPE:
            return self._parse_json(api, body)
        if content_type == _XML_TYPE:
            return self._parse_xml(api, body)
        raise OSMError(f"Overpass at {self.url} answered with content type {content_type!r}, expected JSON or OSM XML")

    def _parse_json(self, api: overpy.Overpass, body: bytes) -> overpy.Result:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OSMError(f"Overpass at {self.url} answered with invalid JSON: {error}") from error
        if not isinstance(data, dict) or not isinstance(data.get("elements"), list):
            raise OSMError(f"Overpass at {self.url} answered JSON without an 'elements' list")
        if data.get("remark"):
            self._handle_remark(str(data.pop("remark")))
        try:
            return overpy.Result.from_json(data, api=api)
        except (ValueError, TypeError, KeyError, overpy_errors.OverPyException) as error:
            raise OSMError(f"Overpass at {self.url} answered with malformed elements: {error}") from error

    def _parse_xml(self, api: overpy.Overpass, body: bytes) -> overpy.Result:
        text = body.decode("utf-8", errors="replace")
        remark = _XML_REMARK.search(text)
        if remark:
            self._handle_remark(remark.group("msg"))
            text = _XML_REMARK.sub("", text)
        try:
            return api.parse_xml(text)
        except Exception as error:
            raise OSMError(f"Overpass at {self.url} answered with unreadable XML: {error}") from error

    def _handle_remark(self, remark: str) -> None:
        # overpy knows how Overpass words its remarks; reuse its classification.
        shown = sanitize_text(remark, max_len=300)
        try:
            overpy.Overpass._handle_remark_msg(remark)
        except overpy_errors.OverpassRuntimeRemark:
            log.warning("Overpass at %s remarked: %s", self.url, shown)
        except overpy_errors.OverpassRuntimeError as error:
            raise OSMError(
                f"Overpass at {self.url} could not answer the query: {shown} "
                f"(try a smaller radius or tile_deg, or a larger timeout_s than {self.timeout_s})"
            ) from error
        except overpy_errors.OverpassUnknownError as error:
            raise OSMError(f"Overpass at {self.url} answered with an unrecognized remark: {shown}") from error


def group_by_tile(lats: np.ndarray, lons: np.ndarray, tile_deg: float) -> list[list[int]]:
    """Indices of the points grouped by their ``tile_deg`` grid cell, in order of first appearance."""
    tiles: dict[tuple[int, int], list[int]] = {}
    rows = np.floor(np.asarray(lats) / tile_deg).astype(int)
    cols = np.floor(np.asarray(lons) / tile_deg).astype(int)
    for i, cell in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        tiles.setdefault(cell, []).append(i)
    return list(tiles.values())


def bbox_around(lats: np.ndarray, lons: np.ndarray, radius_m: float, *, snap_deg: float = BBOX_SNAP_DEG) -> BBox:
    """(south, west, north, east) holding every point's `radius_m` circle, rounded outward to `snap_deg`.

    Near the poles the box spans every longitude. A box is clipped at the antimeridian rather than
    wrapped, so features just across it are missed.
    """
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    south = max(-90.0, _snap_down(float(np.min(lats)) - dlat, snap_deg))
    north = min(90.0, _snap_up(float(np.max(lats)) + dlat, snap_deg))
    widest = max(abs(south), abs(north))
    if widest >= 89.0:
        return south, -180.0, north, 180.0
    dlon = dlat / math.cos(math.radians(widest))
    west = max(-180.0, _snap_down(float(np.min(lons)) - dlon, snap_deg))
    east = min(180.0, _snap_up(float(np.max(lons)) + dlon, snap_deg))
    return south, west, north, east


def build_query(bbox: BBox, *, keys: Iterable[str] | None = None, timeout_s: int = 180) -> str:
    """Overpass QL for the features with any of `keys` (None: every category key) inside `bbox`.

    Nodes come with their coordinates; ways and relations with tags and their centre only,
    which keeps answers small.
    """
    statements = [line for key in sorted(keys or CATEGORY_KEYS, key=_key_order) for line in _statements_for(key)]
    south, west, north, east = bbox
    return "\n".join(
        [
            f"[out:json][timeout:{int(timeout_s)}][bbox:{south:.6f},{west:.6f},{north:.6f},{east:.6f}];",
            "(",
            *(f"  {statement}" for statement in statements),
            ")->.found;",
            "node.found;",
            "out qt;",
            "(way.found; relation.found;);",
            "out tags center qt;",
        ]
    )


def features_from_result(result: overpy.Result) -> Iterator[OSMFeature]:
    """Normalized features of an overpy result (areas, which carry no coordinates, are skipped)."""
    for node in result.nodes:
        feature = feature_from_element("node", node.id, node.tags, float(node.lat), float(node.lon))
        if feature is not None:
            yield feature
    for element, osm_type in [(way, "way") for way in result.ways] + [(rel, "relation") for rel in result.relations]:
        if not element.tags:
            continue
        point = _element_point(element)
        if point is None:
            log.debug("Overpass %s %s has no centre or geometry; skipped", osm_type, element.id)
            continue
        feature = feature_from_element(osm_type, element.id, element.tags, *point)
        if feature is not None:
            yield feature


def _element_point(element: overpy.Way | overpy.Relation) -> tuple[float, float] | None:
    if element.center_lat is not None and element.center_lon is not None:
        return float(element.center_lat), float(element.center_lon)
    if isinstance(element, overpy.Way):
        return _way_point(element)
    return _relation_point(element)


def _way_point(way: overpy.Way) -> tuple[float, float] | None:
    # Answers printed with `out body` plus `>;` carry node positions instead of a centre.
    try:
        coords = [(float(node.lon), float(node.lat)) for node in way.get_nodes(resolve_missing=False)]
    except overpy_errors.DataIncomplete:
        return None
    if len(coords) < 2:
        return None
    closed = len(coords) >= 4 and coords[0] == coords[-1]
    return representative_lat_lon(Polygon(coords) if closed else LineString(coords))


def _relation_point(relation: overpy.Relation) -> tuple[float, float] | None:
    # Answers printed with `out geom` carry member geometry instead of a centre.
    lines = [
        [(float(v.lon), float(v.lat)) for v in member.geometry]
        for member in relation.members
        if getattr(member, "geometry", None) and len(member.geometry) >= 2
    ]
    return representative_lat_lon(MultiLineString(lines)) if lines else None


def _statements_for(key: str) -> list[str]:
    if key == "building":
        special = "|".join(sorted(SPECIAL_BUILDINGS))
        return ['nwr["building"]["name"];', f'nwr["building"~"^({special})$"];']
    noise = NOISE_VALUES.get(key)
    if noise:
        return [f'nwr["{key}"]["{key}"!~"^({"|".join(sorted(noise))})$"];', f'nwr["{key}"]["name"];']
    return [f'nwr["{key}"];']


def _key_order(key: str) -> tuple[int, str]:
    return (CATEGORY_KEYS.index(key) if key in CATEGORY_KEYS else len(CATEGORY_KEYS), key)


def _snap_down(value: float, step: float) -> float:
    return round(math.floor(value / step + 1e-9) * step, 6)


def _snap_up(value: float, step: float) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 6)


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


def _read_cache(path: Path) -> tuple[bytes, str] | None:
    for candidate, content_type in ((path, _JSON_TYPE), (path.with_suffix(".xml"), _XML_TYPE)):
        if candidate.is_file():
            return candidate.read_bytes(), content_type
    return None


class _RetryableStatus(OSMError):
    def __init__(self, status: int, retry_after: str | None):
        super().__init__(f"HTTP {status}" + (f" (Retry-After: {retry_after})" if retry_after else ""))
        self.status = status
        self.retry_after = retry_after


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.UnsupportedProtocol):
        return False
    return isinstance(error, _RetryableStatus | httpx.TimeoutException | httpx.TransportError)


def _retry_after_s(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP-date form: fall back to the computed backoff rather than parse calendars.
        return None


def _describe(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    return str(error) or type(error).__name__


def _http_error_message(url: str, response: httpx.Response) -> str:
    messages = [_HTML_TAG.sub("", match.group("msg")) for match in _HTML_ERROR.finditer(response.text)]
    detail = "; ".join(sanitize_text(message, max_len=300) for message in messages)
    if response.status_code == 400:
        return f"Overpass at {url} rejected the query (HTTP 400): {detail or 'bad request'}"
    return f"Overpass at {url} answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
