"""Overpass answers (JSON or OSM XML) read with overpy, and overpy elements turned into OSMFeatures.

Overpass reports trouble inside a 200 answer, as a ``remark``; overpy knows how Overpass words them, so
its classification decides between a warning (the answer is used) and an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import overpy
from overpy import exception as overpy_errors
from shapely.geometry import LineString, MultiLineString, Polygon

from gaea.errors import OSMError
from gaea.osm._geometry import representative_lat_lon
from gaea.osm.features import OSMFeature, feature_from_element
from gaea.osm.sanitize import sanitize_text

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
XML_TYPE = "application/osm3s+xml"
_XML_REMARK = re.compile(r"<remark>(?P<msg>[^<>]*)</remark>")


def parse_answer(body: bytes, content_type: str, *, where: str, timeout_s: int) -> overpy.Result:
    """The overpy result of an Overpass answer.

    Parameters
    ----------
    where
        Names the server in error messages, e.g. ``"Overpass at https://..."``.
    timeout_s
        The ``[timeout:..]`` the query asked for (quoted when the server ran out of time).

    Raises
    ------
    OSMError
        An answer of another content type, unreadable, malformed, or with an error remark.
    """
    api = overpy.Overpass()
    if content_type == JSON_TYPE:
        return _parse_json(api, body, where=where, timeout_s=timeout_s)
    if content_type == XML_TYPE:
        return _parse_xml(api, body, where=where, timeout_s=timeout_s)
    raise OSMError(f"{where} answered with content type {content_type!r}, expected JSON or OSM XML")


def _parse_json(api: overpy.Overpass, body: bytes, *, where: str, timeout_s: int) -> overpy.Result:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OSMError(f"{where} answered with invalid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("elements"), list):
        raise OSMError(f"{where} answered JSON without an 'elements' list")
    if data.get("remark"):
        _handle_remark(str(data.pop("remark")), where=where, timeout_s=timeout_s)
    try:
        return overpy.Result.from_json(data, api=api)
    except (ValueError, TypeError, KeyError, overpy_errors.OverPyException) as error:
        raise OSMError(f"{where} answered with malformed elements: {error}") from error


def _parse_xml(api: overpy.Overpass, body: bytes, *, where: str, timeout_s: int) -> overpy.Result:
    text = body.decode("utf-8", errors="replace")
    remark = _XML_REMARK.search(text)
    if remark:
        _handle_remark(remark.group("msg"), where=where, timeout_s=timeout_s)
        text = _XML_REMARK.sub("", text)
    try:
        return api.parse_xml(text)
    except Exception as error:
        raise OSMError(f"{where} answered with unreadable XML: {error}") from error


def _handle_remark(remark: str, *, where: str, timeout_s: int) -> None:
    shown = sanitize_text(remark, max_len=300)
    try:
        overpy.Overpass._handle_remark_msg(remark)
    except overpy_errors.OverpassRuntimeRemark:
        log.warning("%s remarked: %s", where, shown)
    except overpy_errors.OverpassRuntimeError as error:
        raise OSMError(
            f"{where} could not answer the query: {shown} "
            f"(try a smaller radius or tile_deg, or a larger timeout_s than {timeout_s})"
        ) from error
    except overpy_errors.OverpassUnknownError as error:
        raise OSMError(f"{where} answered with an unrecognized remark: {shown}") from error


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
