"""The map of a prediction: the predicted point and its similar / dissimilar gallery neighbours over country
outlines, drawn as inline SVG so that it shows with no network at all.

The outlines are Natural Earth 1:110m country shapes as shipped inside the `countryinfo` package (MIT), read
from its data files: no download at run time. Where map tiles are reachable, an interactive OpenStreetMap
of the predicted point opens below it (folded until asked for, so an offline page shows no broken frame).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from gaea.types import Candidate, Neighbor, Prediction

#: Smallest span (degrees of longitude) shown, so that one point is seen with its country around it.
MIN_SPAN_DEG = 12.0
#: Share of the points' extent added on each side.
MARGIN = 0.15
WIDTH_PX, HEIGHT_PX = 720, 360
#: How many gallery neighbours of each kind are drawn (the nearest first).
MAX_NEIGHBOURS_DRAWN = 16

COLOURS = {"predicted": "#d62728", "similar": "#1f77b4", "dissimilar": "#7f7f7f", "candidate": "#ff7f0e"}


@dataclass(frozen=True)
class ViewBox:
    """A lon/lat window in SVG user units (x = lon, y = -lat)."""

    west: float
    north: float
    span_lon: float
    span_lat: float

    def attribute(self) -> str:
        return f"{self.west:.3f} {-self.north:.3f} {self.span_lon:.3f} {self.span_lat:.3f}"


def _ring_path(ring: list[list[float]]) -> str:
    return "M" + "L".join(f"{lon:.2f},{-lat:.2f}" for lon, lat, *_ in ring) + "Z"


def _geometry_path(geometry: dict) -> str:
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    return "".join(_ring_path(ring) for polygon in polygons for ring in polygon)


@lru_cache(maxsize=1)
def country_outlines() -> tuple[tuple[str, str], ...]:
    """(country name, SVG path data) for each country whose outline `countryinfo` ships."""
    outlines = []
    for entry in sorted(resources.files("countryinfo").joinpath("data").iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".json"):
            continue
        collection = json.loads(entry.read_text(encoding="utf-8")).get("geoJSON") or {}
        for feature in collection.get("features", []):
            geometry = feature.get("geometry") or {}
            if geometry.get("type") in ("Polygon", "MultiPolygon"):
                outlines.append((str(feature.get("properties", {}).get("name", "")), _geometry_path(geometry)))
    return tuple(outlines)


def _points(prediction: Prediction | None, *, with_dissimilar: bool) -> list[tuple[float, float]]:
    if prediction is None:
        return []
    neighbours = prediction.similar[:MAX_NEIGHBOURS_DRAWN]
    if with_dissimilar:
        neighbours = neighbours + prediction.dissimilar[:MAX_NEIGHBOURS_DRAWN]
    points = [(n.lon, n.lat) for n in neighbours] + [(c.lon, c.lat) for c in _ranked(prediction)]
    if prediction.point is not None:
        points.append((prediction.lon, prediction.lat))
    return points


def view_box(points: list[tuple[float, float]]) -> ViewBox:
    """The window showing every (lon, lat) point with a margin, at the map's aspect ratio (the world if none)."""
    if not points:
        return ViewBox(-180.0, 90.0, 360.0, 180.0)
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    aspect = WIDTH_PX / HEIGHT_PX
    span_lon = max(MIN_SPAN_DEG, (max(lons) - min(lons)) * (1 + 2 * MARGIN))
    span_lat = max(span_lon / aspect, (max(lats) - min(lats)) * (1 + 2 * MARGIN))
    span_lon = min(360.0, max(span_lon, span_lat * aspect))
    span_lat = min(180.0, span_lon / aspect)
    centre_lon, centre_lat = (max(lons) + min(lons)) / 2, (max(lats) + min(lats)) / 2
    west = min(max(centre_lon - span_lon / 2, -180.0), 180.0 - span_lon)
    north = max(min(centre_lat + span_lat / 2, 90.0), -90.0 + span_lat)
    return ViewBox(west, north, span_lon, span_lat)


def _marker(kind: str, lon: float, lat: float, radius: float, title: str) -> str:
    return (
        f'<circle class="gaea-{kind}" cx="{lon:.4f}" cy="{-lat:.4f}" r="{radius:.4f}" fill="{COLOURS[kind]}" '
        f'fill-opacity="{0.95 if kind == "predicted" else 0.75}" stroke="white" vector-effect="non-scaling-stroke">'
        f"<title>{html.escape(title)}</title></circle>"
    )


def _ranked(prediction: Prediction) -> list[Candidate]:
    """The ranked candidates of a prediction (none when no ranker chose it)."""
    return prediction.candidates if prediction.ranker else []


def _candidate_title(rank: int, candidate: Candidate) -> str:
    place = f"{candidate.place} " if candidate.place else ""
    score = "" if candidate.rank_score is None else f", score {candidate.rank_score:.3f}"
    return f"candidate {rank} ({candidate.source}): {place}({candidate.lat:.4f}, {candidate.lon:.4f}){score}"


def _neighbour_title(kind: str, neighbour: Neighbor) -> str:
    place = f"{neighbour.place} " if neighbour.place else ""
    return f"{kind} gallery photo {neighbour.id}: {place}({neighbour.lat:.4f}, {neighbour.lon:.4f}), " \
        f"similarity {neighbour.similarity:.3f}"


def map_svg(prediction: Prediction | None, *, overview: bool = False, height_px: int = HEIGHT_PX) -> str:
    """The map as one `<svg>` element: outlines, then dissimilar, similar and (on top) predicted markers.

    It is framed on the predicted point and its similar neighbours, or with `overview` (and wherever there is no
    predicted point to frame) on every marker: dissimilar neighbours are, by construction, far away.
    """
    frame_all = overview or prediction is None or prediction.point is None
    box = view_box(_points(prediction, with_dissimilar=frame_all))
    radius = box.span_lon * 0.014  # about 6 px at the panel's usual width
    outlines = "".join(
        f'<path d="{path}"><title>{html.escape(name)}</title></path>' for name, path in country_outlines()
    )
    markers = []
    if prediction is not None:
        for kind, neighbours in (("dissimilar", prediction.dissimilar), ("similar", prediction.similar)):
            markers += [
                _marker(kind, n.lon, n.lat, radius * 0.7, _neighbour_title(kind, n))
                for n in neighbours[:MAX_NEIGHBOURS_DRAWN]
            ]
        ranked = _ranked(prediction)
        markers += [_marker("candidate", c.lon, c.lat, radius, _candidate_title(rank, c))
                    for rank, c in enumerate(ranked[1:], 2)]
        if prediction.point is not None:
            title = f"predicted: {prediction.location or 'unnamed place'} ({prediction.point})"
            if ranked:
                title += f", the {ranked[0].source} candidate ranked first by {prediction.ranker}"
            markers.append(_marker("predicted", prediction.lon, prediction.lat, radius * 1.3, title))
    return (
        f'<svg class="gaea-map{" gaea-overview" if overview else ""}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="{box.attribute()}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="map of the prediction" '
        f'style="background:#dbe9f4;max-height:{height_px}px">'
        # vector-effect is not inherited, hence the style rule: borders stay hairlines at every zoom.
        "<style>.gaea-countries path{vector-effect:non-scaling-stroke}</style>"
        f'<g class="gaea-countries" fill="#f4f1e8" stroke="#8c8c8c" stroke-width="0.7">{outlines}</g>'
        f'<g class="gaea-markers">{"".join(markers)}</g></svg>'
    )


def _legend(*, candidates: bool = False) -> str:
    items = [("predicted", "predicted point"), ("similar", "similar gallery photos"),
             ("dissimilar", "dissimilar gallery photos")]
    if candidates:
        items.insert(1, ("candidate", "other ranked candidates (hover: source, score)"))
    return "".join(
        f'<span style="margin-right:1em"><span style="display:inline-block;width:0.8em;height:0.8em;'
        f'border-radius:50%;background:{COLOURS[kind]};margin-right:0.3em"></span>{label}</span>'
        for kind, label in items
    )


def osm_link(lat: float, lon: float, *, zoom: int = 12) -> str:
    """The OpenStreetMap page centred on a point, with a marker (interactive wherever tiles are reachable)."""
    return f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map={zoom}/{lat:.5f}/{lon:.5f}"


def osm_embed_url(lat: float, lon: float, *, span_deg: float = 0.05) -> str:
    """OpenStreetMap's embeddable, pannable map around a point, with a marker on it."""
    half = span_deg / 2
    bbox = f"{lon - half:.5f},{lat - half / 2:.5f},{lon + half:.5f},{lat + half / 2:.5f}"
    return f"https://www.openstreetmap.org/export/embed.html?bbox={bbox}&layer=mapnik&marker={lat:.5f},{lon:.5f}"


def _interactive_map(lat: float, lon: float) -> str:
    return (
        '<details class="gaea-interactive"><summary>Interactive map (OpenStreetMap, needs internet)</summary>'
        f'<iframe src="{html.escape(osm_embed_url(lat, lon))}" title="OpenStreetMap around the predicted point" '
        'loading="lazy" referrerpolicy="no-referrer" style="width:100%;height:320px;border:0"></iframe></details>'
    )


def map_html(prediction: Prediction | None) -> str:
    """The map panel: the SVG map (and, when it is zoomed on a predicted point, a world overview of the dissimilar
    neighbours), a legend and, when there is a point, a link to it on OpenStreetMap and an interactive map of
    it, folded. Without a predicted point there is one map, of every neighbour."""
    has_point = prediction is not None and prediction.point is not None
    parts = [f'<div class="gaea-map-panel">{map_svg(prediction)}']
    if has_point and prediction.dissimilar:
        parts.append(f'<div style="margin-top:0.3em">{map_svg(prediction, overview=True, height_px=180)}</div>')
    with_candidates = prediction is not None and len(_ranked(prediction)) > 1
    parts.append(f'<div style="font-size:0.85em">{_legend(candidates=with_candidates)}')
    if has_point:
        link = osm_link(prediction.lat, prediction.lon)
        parts.append(f' · <a href="{html.escape(link)}" target="_blank" rel="noopener">open in OpenStreetMap</a>')
    parts.append("</div>")
    if has_point:
        parts.append(_interactive_map(prediction.lat, prediction.lon))
    parts.append("</div>")
    return "".join(parts)

