"""The on-disk feature store of an OpenStreetMap extract: built once in one streaming pass, then read only
around the points asked about.

A store is a folder::

    store.json          the extract's identity (size, modification time, hash of both ends), feature count,
                        bounds (the features' box, the header's box), layout and build figures; written last,
                        so a folder without it is no store
    blocks.parquet      one row per block (a row group of a cell file): its file, rows and bounding box
    cells/<h3>.parquet  the features of one H3 cell (resolution 3, ~12,000 km²): the columns the pipeline
                        uses (osm_type, osm_id, name, tags as JSON, lat, lon) plus `seq` (the reading order)
                        and `h3` (the feature's resolution-15 cell), sorted by `h3` in blocks of 2,048 rows

Sorting by the fine H3 cell makes every block a compact patch of ground, small where features are dense. A
query finds the blocks whose boxes meet the box of each circle (an R-tree over the block boxes), reads those
blocks only (cached in memory up to a budget), and searches each one's k-d tree for the points that need it.
The features and their order (ties in reading order) are exactly those of the in-memory source.

The build streams: features go to a parquet file as they are read (pyosmium's node locations go to a file
on disk when the extract's nodes would not fit the memory budget), DuckDB sorts them within the same
budget (spilling to disk), and the sorted stream is cut into cell files. It runs in a temporary folder beside
the target and is renamed into place at the end, under a lock, so a killed build leaves no half store and
the next build starts afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3
import numpy as np

from gaea.errors import BadInputError, OSMError
from gaea.osm._spatial import Pairs, PointIndex, cap_boxes, within_each
from gaea.osm.extract import checked_extract_path, extract_identity, header_bounds, read_features
from gaea.osm.features import OSMFeature
from gaea.osm.local import LocalOSMSource, RadiusSearch, found_features
from gaea.osm.source import Bounds
from gaea.settings import get_settings

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the header box of the extract ("header_bounds")
MANIFEST, BLOCKS, CELLS = "store.json", "blocks.parquet", "cells"
CELL_RESOLUTION = 3  # H3 resolution of a cell file
FINE_RESOLUTION = 15  # H3 resolution of the sort key
BLOCK_ROWS = 2_048
# Rough memory per feature, for budgets: a row of the build's write buffer; a row of a block read from disk
# (its columns, unit vector and k-d tree), and what decoding it adds (its OSMFeature and the data pipeline's
# per-feature facts).
_BUILD_ROW_BYTES, _BLOCK_ROW_BYTES, _DECODED_ROW_BYTES = 600, 300, 1_500
_NODE_INDEX_BYTES = 16  # pyosmium's in-memory location index, per node
_BYTES_PER_NODE = 4  # a low guess (more nodes than real PBFs, let alone XML, hold): the on-disk index comes early
_POINTS_PER_WINDOW = 512


def open_osm_source(path: str | Path, *, store: bool | None = None) -> LocalOSMSource | FeatureStore:
    """Open map data for feature lookups: a store folder, or an extract (``.osm``, ``.osm.bz2``, ``.xml``,
    ``.osm.pbf``, ``.pbf``).

    An extract of at least ``GAEA_OSM_STORE_MIN_MB`` megabytes (or any, with ``store=True``) is opened
    through its feature store, built on first use and reused while the extract is unchanged; a smaller one
    is read into memory (and opening it again in this process reuses what was read).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        store = FeatureStore(path)
        built_from = Path(store.manifest.get("source", ""))
        if built_from.is_file() and extract_identity(built_from) != store.manifest["extract"]:
            log.warning("the feature store %s is older than %s; rebuild it: gaea osm index %s --out %s",
                        path, built_from, built_from, path)
        return store
    extract = checked_extract_path(path)
    if store is None:
        store = extract.stat().st_size >= get_settings().osm_store_min_mb * 2**20
    if store:
        target = default_store_dir(extract)
        if not _holds_store_of(target, extract_identity(extract)):
            # A country takes long to index: say once what is happening and how to do it ahead of time.
            log.warning("building the feature store of %s in %s (once; `gaea osm index` builds it ahead)",
                        extract, target)
        return FeatureStore(build_store(extract, target))
    return LocalOSMSource.from_file(extract)


# ---------------------------------------------------------------------------------------------- building


def default_store_dir(extract: Path) -> Path:
    """Beside the extract (``NAME.gaea-store``), or under the cache folder when the extract's folder is not
    writable (``GAEA_CACHE_DIR/osm-stores/NAME-HASH``)."""
    extract = Path(extract).resolve()  # one store per file, however its path is spelled (symlinks, ../)
    if _writable(extract.parent):
        return extract.parent / f"{extract.name}.gaea-store"
    key = hashlib.sha256(str(extract).encode()).hexdigest()[:12]
    return get_settings().cache_dir / "osm-stores" / f"{extract.name}-{key}"


def _writable(folder: Path) -> bool:
    # The mode bits count too: a folder marked read-only (shared data) stays untouched even for root.
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def build_store(extract: str | Path, out: str | Path | None = None, *, memory_mb: int | None = None,
                wait: bool = True, progress: bool = False) -> Path:
    """Build the feature store of `extract` in `out` (default: :func:`default_store_dir`), unless a store of
    this very version of the extract is there already; return the store folder.

    Parameters
    ----------
    memory_mb
        Memory the build may use besides the interpreter (default: the ``GAEA_OSM_STORE_MEMORY_MB`` setting).
    wait
        When another process is building the same store: wait for it (True) or raise OSMError (False).

    Raises
    ------
    BadInputError
        `extract` is missing or not an extract, or `out` is a folder holding something else.
    OSMError
        The extract cannot be read, or another process is building the store and `wait` is False.
    """
    extract = checked_extract_path(extract)
    target = Path(out).expanduser().resolve() if out else default_store_dir(extract)
    identity = extract_identity(extract)
    if _holds_store_of(target, identity):
        return target
    if target.exists() and not (target / MANIFEST).is_file():
        raise BadInputError(f"{target} exists and is not a feature store; choose another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target, wait=wait):
        if _holds_store_of(target, identity):  # built by the process we waited for
            return target
        for leftover in target.parent.glob(f".{target.name}.partial-*"):
            log.info("removing %s, left by a build that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        work = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        work.mkdir()
        try:
            _write_store(extract, identity, work, memory_mb or get_settings().osm_store_memory_mb, progress)
            _swap_in(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _holds_store_of(folder: Path, identity: dict) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("format") == FORMAT and manifest.get("extract") == identity


@contextlib.contextmanager
def _build_lock(target: Path, *, wait: bool) -> Iterator[None]:
    """An exclusive lock on ``.NAME.lock`` beside the store (released by the system if the builder dies)."""
    path = target.parent / f".{target.name}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise OSMError(f"another process is building the feature store {target} (lock {path} is held); "
                               "wait for it to finish") from None
            log.warning("waiting for another process to finish building the feature store %s", target)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _swap_in(work: Path, target: Path) -> None:
    """Replace `target` by the finished `work` folder: readers see the old store or the new one, whole."""
    stale = None
    if target.exists():
        stale = target.parent / f".{target.name}.stale-{os.getpid()}"
        os.rename(target, stale)
    os.rename(work, target)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_store(extract: Path, identity: dict, work: Path, memory_mb: int, progress: bool) -> dict:
    from tqdm import tqdm

    started = time.perf_counter()
    scratch = work / "scratch"  # what only the build needs: removed before the store is renamed into place
    scratch.mkdir()
    locations = _location_index(extract, scratch, memory_mb)
    features = _FeatureWriter(scratch / "features.parquet", batch_rows=_batch_rows(memory_mb))
    with features, tqdm(desc=f"reading {extract.name}", unit=" features", disable=not progress) as bar:
        for feature in read_features(extract, locations=locations):
            features.add(feature)
            bar.update(1)
    read_s = time.perf_counter() - started
    _sort_features(scratch / "features.parquet", scratch / "sorted.parquet", scratch / "duckdb", memory_mb)
    blocks = _write_cells(scratch / "sorted.parquet", work / CELLS, progress=progress, total=features.count)
    shutil.rmtree(scratch)
    _write_table(work / BLOCKS, blocks)
    manifest = {
        "format": FORMAT,
        "extract": identity,
        "source": str(extract),
        "features": features.count,
        "bounds": features.bounds,
        "header_bounds": _box_of(header_bounds(extract)),
        "cells": len(set(blocks["file"])),
        "blocks": len(blocks["file"]),
        "layout": {"cell_resolution": CELL_RESOLUTION, "fine_resolution": FINE_RESOLUTION, "block_rows": BLOCK_ROWS},
        "build": {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.perf_counter() - started, 2),
                  "read_seconds": round(read_s, 2),
                  "memory_mb": memory_mb, "node_locations": locations.split(",")[0]},
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _location_index(extract: Path, folder: Path, memory_mb: int) -> str:
    """pyosmium's node location index: in memory when the extract's nodes fit half the budget, else a file
    in `folder` (sorted pairs of id and location; a dense array by id for planet-size extracts)."""
    nodes = extract.stat().st_size / _BYTES_PER_NODE
    if nodes * _NODE_INDEX_BYTES <= memory_mb * 2**20 / 2:
        return "flex_mem"
    kind = "dense_file_array" if nodes > 1e9 else "sparse_file_array"
    return f"{kind},{folder / 'node-locations.bin'}"


def _batch_rows(memory_mb: int) -> int:
    """Features buffered before a write: a quarter of the budget, 10,000 to 100,000."""
    return int(min(100_000, max(10_000, memory_mb * 2**20 // 4 // _BUILD_ROW_BYTES)))


_COLUMNS = ("h3", "seq", "osm_type", "osm_id", "name", "tags", "lat", "lon")


class _FeatureWriter:
    """Appends features to a parquet file in reading order (`seq`), with their fine H3 cell, in batches;
    keeps their count and bounds ([min lat, min lon, max lat, max lon], None while there are none)."""

    def __init__(self, path: Path, *, batch_rows: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = pa.schema([("h3", pa.uint64()), ("seq", pa.int64()), ("osm_type", pa.string()),
                                 ("osm_id", pa.int64()), ("name", pa.string()), ("tags", pa.string()),
                                 ("lat", pa.float64()), ("lon", pa.float64())])
        self._writer = pq.ParquetWriter(path, self.schema)
        self._batch_rows = batch_rows
        self._columns: dict[str, list] = {name: [] for name in _COLUMNS}
        self.count = 0
        self.bounds: list[float] | None = None

    def add(self, feature: OSMFeature) -> None:
        columns = self._columns
        columns["h3"].append(_fine_cell(feature.lat, feature.lon))
        columns["seq"].append(self.count)
        columns["osm_type"].append(feature.osm_type)
        columns["osm_id"].append(feature.osm_id)
        columns["name"].append(feature.name)
        columns["tags"].append(json.dumps(feature.tags, ensure_ascii=False))
        columns["lat"].append(feature.lat)
        columns["lon"].append(feature.lon)
        self.count += 1
        if len(columns["seq"]) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._columns["seq"]:
            return
        lats, lons = np.asarray(self._columns["lat"]), np.asarray(self._columns["lon"])
        box = [lats.min(), lons.min(), lats.max(), lons.max()]
        if self.bounds is not None:
            box = [*np.minimum(box[:2], self.bounds[:2]), *np.maximum(box[2:], self.bounds[2:])]
        self.bounds = [float(value) for value in box]
        self._writer.write_table(pa.table(self._columns, schema=self.schema))
        for values in self._columns.values():
            values.clear()

    def __enter__(self) -> _FeatureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self._writer.close()


def _fine_cell(lat: float, lon: float) -> int:
    return h3.latlng_to_cell(lat, lon, FINE_RESOLUTION)


def _sort_features(source: Path, target: Path, spill: Path, memory_mb: int) -> None:
    """Sort by fine cell (then reading order) with DuckDB, within `memory_mb`, spilling to `spill`."""
    import duckdb

    spill.mkdir()
    with duckdb.connect(config={"memory_limit": f"{max(64, memory_mb // 2)}MB", "temp_directory": str(spill),
                                "preserve_insertion_order": True}) as db:
        db.execute(f"COPY (SELECT * FROM read_parquet('{source}') ORDER BY h3, seq) TO '{target}' "
                   "(FORMAT parquet, ROW_GROUP_SIZE 65536)")


def _write_cells(sorted_path: Path, folder: Path, *, progress: bool, total: int) -> dict[str, list]:
    """Cut the sorted features into one file per coarse cell (each cell's rows are consecutive); the index
    of the blocks written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    shift = 3 * (FINE_RESOLUTION - CELL_RESOLUTION)  # a fine cell id less its last digits: its coarse cell
    files = _CellFiles(folder)
    with tqdm(total=total, desc="writing cells", unit=" features", disable=not progress) as bar:
        for batch in pq.ParquetFile(sorted_path).iter_batches(batch_size=65_536):
            table = pa.Table.from_batches([batch])
            fine = table["h3"].to_numpy()
            keys = fine >> shift
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist()
            for begin, end in zip(starts, [*starts[1:], len(keys)], strict=True):
                cell = h3.int_to_str(h3.cell_to_parent(int(fine[begin]), CELL_RESOLUTION))
                files.add(cell, table.slice(begin, end - begin))
            bar.update(table.num_rows)
    files.close()
    return files.index


class _CellFiles:
    """Writes the rows of one cell after another into ``FOLDER/<cell>.parquet``, in blocks of BLOCK_ROWS
    (one parquet row group each), and indexes every block."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.index: dict[str, list] = {name: [] for name in ("file", "group", "rows", "min_lat", "min_lon",
                                                             "max_lat", "max_lon")}
        self._cell: str | None = None
        self._writer: Any = None
        self._groups = 0
        self._pending: list = []
        self._pending_rows = 0

    def add(self, cell: str, table: Any) -> None:
        import pyarrow.parquet as pq

        if cell != self._cell:
            self.close()
            self._cell, self._groups = cell, 0
            self._writer = pq.ParquetWriter(self.folder / f"{cell}.parquet", table.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= BLOCK_ROWS:
            self._write(self._take(BLOCK_ROWS))

    def close(self) -> None:
        if self._pending_rows:
            self._write(self._take(self._pending_rows))
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _take(self, rows: int) -> Any:
        import pyarrow as pa

        merged = pa.concat_tables(self._pending)
        self._pending = [merged.slice(rows)] if merged.num_rows > rows else []
        self._pending_rows = merged.num_rows - rows
        return merged.slice(0, rows)

    def _write(self, table: Any) -> None:
        lat, lon = table["lat"].to_numpy(), table["lon"].to_numpy()
        for name, value in (("file", self._cell), ("group", self._groups), ("rows", table.num_rows),
                            ("min_lat", lat.min()), ("min_lon", lon.min()), ("max_lat", lat.max()),
                            ("max_lon", lon.max())):
            self.index[name].append(value)
        self._writer.write_table(table, row_group_size=BLOCK_ROWS)
        self._groups += 1


def _box_of(bounds: Bounds | None) -> list[float] | None:
    return None if bounds is None else [bounds.south, bounds.west, bounds.north, bounds.east]


def _write_table(path: Path, columns: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


# ---------------------------------------------------------------------------------------------- reading


class FeatureStore(RadiusSearch):
    """The features of a store folder (see :func:`build_store`), found by distance like the in-memory
    source's and read from disk only around the points asked about.

    Parameters
    ----------
    path
        The store folder.
    memory_mb
        Memory for blocks kept after use (default: the ``GAEA_OSM_STORE_MEMORY_MB`` setting).
    """

    def __init__(self, path: str | Path, *, memory_mb: int | None = None):
        import pyarrow.parquet as pq
        import shapely

        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BadInputError(f"{self.path} is not a feature store (no readable {MANIFEST}); "
                                "build one with `gaea osm index EXTRACT`") from error
        if self.manifest.get("format") != FORMAT:
            raise BadInputError(f"{self.path} holds a feature store of format {self.manifest.get('format')}, "
                                f"not {FORMAT}; rebuild it with `gaea osm index`")
        self.name = f"osm-file:{self.manifest['extract']['name']}"
        box = self.manifest["bounds"]
        #: The box around the features ([min lat, min lon, max lat, max lon]; None: no features).
        self.feature_bounds: tuple[float, float, float, float] | None = tuple(box) if box else None
        #: The area covered, as the in-memory source says it: the extract's header box, else the features' box.
        declared = self.manifest["header_bounds"] or box
        self.bounds = Bounds(*declared) if declared else None
        blocks = pq.read_table(self.path / BLOCKS).to_pydict()
        self._files = [self.path / CELLS / f"{cell}.parquet" for cell in blocks["file"]]
        self._groups = blocks["group"]
        self._tree = shapely.STRtree(shapely.box(blocks["min_lon"], blocks["min_lat"], blocks["max_lon"],
                                                 blocks["max_lat"]))
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._max_cached_bytes = (memory_mb or get_settings().osm_store_memory_mb) * 2**20
        self._pid, self._open = os.getpid(), {}

    def __len__(self) -> int:
        return int(self.manifest["features"])

    def _found(self, lats: np.ndarray, lons: np.ndarray, radius_m: float,
               keys: frozenset[str] | None) -> list[list[OSMFeature]]:
        # Near points first (by fine cell), a window at a time: the blocks in memory stay those of one window.
        order = np.argsort([_fine_cell(lat, lon) for lat, lon in zip(lats.tolist(), lons.tolist(), strict=True)],
                           kind="stable")
        results: list[list[OSMFeature]] = [[] for _ in order]
        for start in range(0, len(order), _POINTS_PER_WINDOW):
            chosen = order[start:start + _POINTS_PER_WINDOW]
            window = self.window(lats[chosen], lons[chosen], radius_m)
            found = within_each(lats[chosen], lons[chosen], window.pairs, window.lats, window.lons, radius_m)
            for i, features in zip(chosen.tolist(), found_features(window.features, found, keys), strict=True):
                results[i] = features
        return results

    def window(self, lats: np.ndarray, lons: np.ndarray, radius_m: float) -> Window:
        """The features within `radius_m` (plus a hair) of each point: the points are grouped by the blocks
        their circles meet, and each block's k-d tree answers its points in one query."""
        import shapely

        lats, lons = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
        boxes = cap_boxes(lats, lons, radius_m)
        asked, hit = self._tree.query(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]))
        order = np.lexsort((asked, hit))
        asked, hit = asked[order], hit[order]
        block_ids = np.unique(hit).tolist()
        blocks = self._blocks(block_ids)
        starts = np.searchsorted(hit, block_ids).tolist() + [len(hit)]
        parts = []
        for position, block in enumerate(blocks):
            points = asked[starts[position]:starts[position + 1]]
            pairs = block.index.pairs(lats[points], lons[points], radius_m)
            parts.append((points[pairs.points], np.full(len(pairs.rows), position), pairs.rows, pairs.chords,
                          block.seq[pairs.rows], block.index.lats[pairs.rows], block.index.lons[pairs.rows]))
        return Window.of(blocks, parts)

    def _blocks(self, ids: list[int]) -> list[Block]:
        """The blocks `ids`, from the cache or read from their files (one read per file); then the least
        recently used other blocks are dropped while the cache holds more than its budget."""
        missing = [i for i in ids if i not in self._cache]
        by_file: dict[Path, list[int]] = {}
        for i in missing:
            by_file.setdefault(self._files[i], []).append(i)
        for path, members in by_file.items():
            for i, block in zip(members, self._read(path, [self._groups[i] for i in members]), strict=True):
                self._cache[i] = block
        for i in ids:
            self._cache.move_to_end(i)
        cached, wanted = sum(block.nbytes for block in self._cache.values()), set(ids)
        while cached > self._max_cached_bytes and len(self._cache) > len(wanted):
            oldest = next(i for i in self._cache if i not in wanted)
            cached -= self._cache.pop(oldest).nbytes
        return [self._cache[i] for i in ids]

    def _read(self, path: Path, groups: list[int]) -> list[Block]:
        import pyarrow.parquet as pq

        if self._pid != os.getpid():  # a forked worker opens its own handles (no file offset shared)
            self._pid, self._open = os.getpid(), {}
        if path not in self._open:
            self._open[path] = pq.ParquetFile(path)
        cells = self._open[path]
        # One thread: a few thousand rows are read faster than threads start (and workers are processes).
        table = cells.read_row_groups(groups, columns=list(_COLUMNS[1:]), use_threads=False)
        sizes = [cells.metadata.row_group(group).num_rows for group in groups]
        starts = np.cumsum([0, *sizes]).tolist()
        return [Block(table.slice(start, size)) for start, size in zip(starts, sizes, strict=False)]


class Block:
    """One row group of a cell file: positions and reading order as arrays, a k-d tree, and the features of
    the rows asked for, decoded on first use. `memo` keeps what a caller derives from the block (the data
    pipeline's per-feature facts of the rows it asked for) for as long as the block stays cached."""

    def __init__(self, table: Any):
        self._table = table
        self.seq = table["seq"].to_numpy()
        self.index = PointIndex(table["lat"].to_numpy(), table["lon"].to_numpy())
        self._decoded: dict[int, OSMFeature] = {}
        self._memo: dict[object, Any] = {}

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def nbytes(self) -> int:
        """About what the block holds in memory: its columns and k-d tree, and the features decoded so far."""
        return len(self) * _BLOCK_ROW_BYTES + len(self._decoded) * _DECODED_ROW_BYTES

    def features_at(self, rows: list[int]) -> list[OSMFeature]:
        """The features of block rows `rows`: only the rows a query finds are decoded (a photo's circle
        finds a few hundred of the thousands of features in its blocks), each once."""
        missing = [row for row in dict.fromkeys(rows) if row not in self._decoded]
        if missing:
            columns = self._table.take(missing).to_pydict()
            for row, values in zip(missing, zip(columns["osm_type"], columns["osm_id"], columns["name"],
                                                columns["tags"], columns["lat"], columns["lon"], strict=True),
                                   strict=True):
                self._decoded[row] = _feature(*values)
        return [self._decoded[row] for row in rows]

    def memo(self, key: object, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


def _feature(osm_type: str, osm_id: int, name: str, tags: str, lat: float, lon: float) -> OSMFeature:
    # Filling __dict__ directly is ~3x faster than the frozen dataclass __init__ (blocks decode thousands).
    feature = object.__new__(OSMFeature)
    feature.__dict__.update(osm_type=osm_type, osm_id=osm_id, name=name, tags=json.loads(tags), lat=lat, lon=lon,
                            distance_m=0.0)
    return feature


@dataclass(frozen=True)
class Window:
    """The features a batch of points found, in reading order, and the (point, feature) pairs.

    Row i of the window is row `row_in_block[i]` of `blocks[block_of[i]]`; `pairs.rows` index window rows.
    """

    blocks: list[Block]
    block_of: np.ndarray
    row_in_block: np.ndarray
    lats: np.ndarray
    lons: np.ndarray
    pairs: Pairs

    @classmethod
    def of(cls, blocks: list[Block], parts: list[tuple[np.ndarray, ...]]) -> Window:
        """From per-block arrays of the pairs found: points, block position, block rows, chords, and the
        rows' seq, lat and lon."""
        if not parts:
            empty = np.empty(0, np.int64)
            return cls(blocks, empty, empty, np.empty(0), np.empty(0), Pairs.empty())
        points, block_of, rows, chords, seq, lats, lons = (np.concatenate(column) for column in
                                                           zip(*parts, strict=True))
        _, first, window_rows = np.unique(seq, return_index=True, return_inverse=True)  # window rows: seq order
        order = np.argsort(points, kind="stable")
        return cls(blocks, block_of[first], rows[first], lats[first], lons[first],
                   Pairs(points[order], window_rows[order], chords[order]))

    def by_block(self) -> Iterator[tuple[Block, np.ndarray]]:
        """Each block with the window rows it holds."""
        by_block = np.argsort(self.block_of, kind="stable")
        starts = np.searchsorted(self.block_of[by_block], np.arange(len(self.blocks) + 1)).tolist()
        for position, block in enumerate(self.blocks):
            yield block, by_block[starts[position]:starts[position + 1]]

    @property
    def features(self) -> list[OSMFeature]:
        found: list[Any] = [None] * len(self.block_of)
        for block, mine in self.by_block():
            for i, feature in zip(mine.tolist(), block.features_at(self.row_in_block[mine].tolist()), strict=True):
                found[i] = feature
        return found
