"""The S2 cell vocabulary of the `s2` location model: an adaptive quadtree of S2 cells built from the
training coordinates, as PlaNet partitions the globe and GeoToken turns the cells into tokens.

Every cell at ``min_level`` that holds a training photo is a top node; a node holding more than
``max_photos`` photos is split into its descendants ``level_step`` S2 levels down that hold photos,
until ``max_level``. Each training photo lies in exactly one leaf, and its token path is the chain of
nodes from a top node down to that leaf. All cell arithmetic (ids, parents, centres) is s2sphere's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import s2sphere

from gaea.errors import BadInputError, ConfigError
from gaea.geo.distance import unit_vectors


@dataclass(frozen=True)
class CellTree:
    """The nodes of the quadtree, in arrays indexed by node number.

    ``cell_ids`` hold the S2 cell id of each node (as int64: the uint64 bits reinterpreted), ``levels`` its
    S2 level, ``parents`` the parent node (-1 for top nodes), ``counts`` its training photos and ``means``
    the (lat, lon) mean of those photos (on the sphere) and ``centres`` the cell centre.
    """

    cell_ids: np.ndarray
    levels: np.ndarray
    parents: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    centres: np.ndarray

    def __len__(self) -> int:
        return len(self.cell_ids)

    def children_table(self) -> np.ndarray:
        """(nodes + 1) x widest rows of child node numbers padded with -1; the last row lists the top nodes
        (the children of the virtual root)."""
        rows: list[list[int]] = [[] for _ in range(len(self) + 1)]
        for node, parent in enumerate(self.parents):
            rows[int(parent) if parent >= 0 else len(self)].append(node)
        table = np.full((len(rows), max(map(len, rows))), -1, dtype=np.int64)
        for row, children in enumerate(rows):
            table[row, :len(children)] = children
        return table

    def depth(self) -> int:
        """Nodes on the longest root-to-leaf path."""
        depths = np.zeros(len(self), dtype=np.int64)
        for node, parent in enumerate(self.parents):  # parents always come before their children
            depths[node] = 0 if parent < 0 else depths[parent] + 1
        return int(depths.max()) + 1


def tree_levels(min_level: int, level_step: int, max_level: int) -> list[int]:
    """The S2 levels the tree's depths stand at."""
    if not 0 <= min_level <= max_level <= s2sphere.CellId.MAX_LEVEL or level_step < 1:
        raise ConfigError(f"S2 levels: need 0 <= min_level ({min_level}) <= max_level ({max_level}) <= 30 and "
                          f"level_step ({level_step}) >= 1")
    return list(range(min_level, max_level + 1, level_step))


def point_cells(lat: np.ndarray, lon: np.ndarray, levels: list[int]) -> np.ndarray:
    """(n x len(levels)) int64 S2 cell ids of each point at each level."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    finest = np.array([s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).parent(levels[-1]).id()
                       for a, b in zip(lat, lon, strict=True)], dtype=np.uint64)
    unique, inverse = np.unique(finest, return_inverse=True)
    ancestors = np.array([[s2sphere.CellId(int(cell)).parent(level).id() for level in levels] for cell in unique],
                         dtype=np.uint64).reshape(len(unique), len(levels))
    return ancestors[inverse].view(np.int64)


def build_cell_tree(lat: np.ndarray, lon: np.ndarray, *, min_level: int = 2, level_step: int = 2,
                    max_level: int = 12, max_photos: int = 50) -> tuple[CellTree, np.ndarray]:
    """The quadtree of the training coordinates and each point's leaf node.

    Raises
    ------
    BadInputError
        When there are no coordinates.
    """
    if len(lat) == 0:
        raise BadInputError("no training coordinates to build the S2 cell vocabulary from")
    if max_photos < 1:
        raise ConfigError(f"max_photos must be at least 1, got {max_photos}")
    levels = tree_levels(min_level, level_step, max_level)
    cells = point_cells(lat, lon, levels)
    xyz = unit_vectors(np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64))
    ids, depth_of, parents, counts, sums = [], [], [], [], []
    leaf = np.full(len(lat), -1, dtype=np.int64)
    active = np.arange(len(lat))          # points whose node at the previous depth was split
    parent_of_active = np.full(len(lat), -1, dtype=np.int64)
    for depth, _level in enumerate(levels):
        keys, first, inverse, count = np.unique(cells[active, depth], return_index=True, return_inverse=True,
                                                return_counts=True)
        numbers = np.arange(len(ids), len(ids) + len(keys))
        ids += keys.tolist()
        depth_of += [depth] * len(keys)
        parents += parent_of_active[active[first]].tolist()
        counts += count.tolist()
        node_sums = np.zeros((len(keys), 3))
        np.add.at(node_sums, inverse, xyz[active])
        sums += list(node_sums)
        node_of_point = numbers[inverse]
        split = (count[inverse] > max_photos) & (depth < len(levels) - 1)
        leaf[active[~split]] = node_of_point[~split]
        parent_of_active[active[split]] = node_of_point[split]
        active = active[split]
    means = _to_lat_lon(np.asarray(sums))
    centres = np.array([_centre(cell) for cell in ids])
    tree = CellTree(cell_ids=np.asarray(ids, dtype=np.int64), levels=np.asarray(levels)[depth_of],
                    parents=np.asarray(parents, dtype=np.int64), counts=np.asarray(counts, dtype=np.int64),
                    means=means, centres=centres)
    return tree, leaf


def paths_to_leaves(parents: np.ndarray, leaves: np.ndarray, depth: int) -> np.ndarray:
    """(n x depth) node paths from a top node down to each leaf, padded with -1 after the leaf."""
    upwards = [np.asarray(leaves, dtype=np.int64)]  # the leaf, its parent, its grandparent, ... (-1 above the top)
    while (upwards[-1] >= 0).any():
        upwards.append(np.where(upwards[-1] >= 0, parents[np.maximum(upwards[-1], 0)], -1))
    upwards = np.stack(upwards)
    lengths = (upwards >= 0).sum(axis=0)
    rows = np.arange(len(leaves))
    chains = np.full((len(leaves), depth), -1, dtype=np.int64)
    for step in range(depth):
        above = lengths - 1 - step
        valid = above >= 0
        chains[valid, step] = upwards[above[valid], rows[valid]]
    return chains


def _centre(cell_id: int) -> tuple[float, float]:
    centre = s2sphere.CellId(int(np.int64(cell_id).view(np.uint64))).to_lat_lng()
    return centre.lat().degrees, centre.lng().degrees


def _to_lat_lon(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.stack([np.degrees(np.arcsin(np.clip(unit[:, 2], -1, 1))), np.degrees(np.arctan2(unit[:, 1], unit[:, 0]))],
                    axis=1)
