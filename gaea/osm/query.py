"""Overpass QL for the features near a group of points: points grouped by grid tile, one snapped
bounding box per tile, and one query per box asking for every category key (or the chosen ones)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from gaea.osm._spatial import EARTH_RADIUS_M
from gaea.osm.features import CATEGORY_KEYS, NOISE_VALUES, SPECIAL_BUILDINGS

#: Query boxes are rounded outward to this grid (degrees) so that nearby queries repeat, and hit the cache.
BBOX_SNAP_DEG = 0.005

BBox = tuple[float, float, float, float]  # south, west, north, east


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
