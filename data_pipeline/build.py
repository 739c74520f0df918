"""`gaea data build`: a streaming, resumable dataset builder, in one process or on a Dask cluster.

Photos are read in a deterministic order and cut into chunks. The photos of a window of chunks are sorted
by spatial cell (H3) and cut into parts, so that each part looks up photos that lie together and reads few
blocks of an OSM store; each part is processed (GPS and image checks, OSM lookup in one batched query,
reverse geocoding, templates) here, or, with ``--workers N`` / ``--scheduler ADDRESS`` (gaea.distributed),
by the cluster's workers. A photo's records depend on the photo alone, so any partition gives the same
records. This process appends each chunk's records to `qa.jsonl` and `skipped.jsonl` in chunk
order, then commits the chunk in `progress.jsonl` with the byte sizes both files had at that moment.

A rerun after a kill truncates both files back to the last committed sizes and goes on with the next
photo, so the result equals an uninterrupted run: nothing is written twice and nothing is lost. The build
holds its folder through the run journal (gaea.runs): a second build into it refuses, and a rerun with other
settings is refused too. Memory holds only the chunks in flight, whatever the number of photos.
"""

from __future__ import annotations

import copy
import gc
import itertools
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_pipeline.context import contexts_for
from data_pipeline.generators import ALL_TYPES, GenerationConfig, generate_records
from data_pipeline.inputs import Photo, resolve_item
from data_pipeline.lookup import FeatureTable, nearby_for, table_for
from gaea import sources
from gaea.credentials import redacted
from gaea.distributed import cluster
from gaea.errors import BadInputError, ConfigError
from gaea.io import JsonlAppender, atomic_write_json, read_jsonl
from gaea.osm.extract import extract_identity
from gaea.records import QARecord
from gaea.runs import open_run
from gaea.settings import get_settings
from gaea.sources import PhotoItem, Skipped, Source, photo_items
from gaea.types import GeoPoint

log = logging.getLogger(__name__)

QA_FILE, SKIPPED_FILE, PROGRESS_FILE, SUMMARY_FILE = "qa.jsonl", "skipped.jsonl", "progress.jsonl", "summary.json"
JOB = "gaea data build"
#: Photos are partitioned by spatial cell within windows of this many chunks: the larger, the more photos
#: share a cell (and the store's blocks a part reads); a window is committed whole.
WINDOW_CHUNKS = 16
#: H3 resolution of the sort key (the store's fine cells): ids of one resolution sort in H3's hierarchical
#: order, so the photos of one cell file of a store (resolution 3) come together, and within it those of
#: one block.
PARTITION_RESOLUTION = 15


@dataclass
class BuildConfig:
    """Everything `gaea data build` takes. Exactly one of `osm_file` and `overpass` names the OSM source."""

    photos: str
    out: Path
    osm_file: str | None = None
    overpass: bool = False
    overpass_url: str | None = None
    overpass_cache_dir: str | None = None
    radius_m: float = 1000.0
    types: tuple[str, ...] = ALL_TYPES
    seed: int = 0
    per_type: int = 2
    #: Dask workers: 1 computes in this process, N > 1 on a local cluster of N processes; `scheduler` names
    #: a running cluster instead (see gaea.distributed).
    workers: int = 1
    scheduler: str | None = None
    chunk_size: int = 64
    rewrite_base_url: str | None = None
    rewrite_model: str | None = None
    #: The rewriter's key (never recorded; see gaea.credentials for where it goes).
    rewrite_api_key: str | None = field(default=None, repr=False)
    hf_dataset: bool = True
    progress: bool = True
    source: Source = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.types = tuple(t.upper() for t in self.types)
        unknown = [t for t in self.types if t not in ALL_TYPES]
        if unknown:
            raise ConfigError(f"unknown question type(s) {', '.join(unknown)}; choose from {', '.join(ALL_TYPES)}")
        if bool(self.osm_file) == bool(self.overpass):
            raise ConfigError("name exactly one OSM source: --osm-file FILE or --overpass")
        self.source = sources.open_source(self.photos)
        if self.osm_file and not Path(self.osm_file).exists():
            raise ConfigError(f"{self.osm_file}: no such OSM file")
        if self.radius_m <= 0 or self.per_type < 1 or self.chunk_size < 1 or self.workers < 1:
            raise ConfigError("--radius-m, --per-type, --chunk-size and --workers must be positive")
        if bool(self.rewrite_base_url) != bool(self.rewrite_model):
            raise ConfigError("--rewrite-base-url and --rewrite-model go together")
        if self.overpass and (self.workers > 1 or self.scheduler):
            # Parallel workers would each keep their own pace and break Overpass's polite rate limit.
            log.warning("Overpass lookups run in one process (--workers / --scheduler ignored)")
            self.workers, self.scheduler = 1, None

    def for_workers(self) -> BuildConfig:
        """This config without the rewriter's key, which only this process (the client) uses."""
        workers = copy.copy(self)
        workers.rewrite_api_key = None
        return workers

    def worker_key(self) -> tuple:
        """What a process's OSM source and generation settings depend on: a long-lived worker of a cluster
        keeps them from one run to the next while this is the same (the extract's size and time included, and
        the size from which an extract is read through its store)."""
        extract = os.stat(self.osm_file) if self.osm_file else None
        return (self.osm_file, extract and (extract.st_size, extract.st_mtime_ns), get_settings().osm_store_min_mb,
                self.overpass, self.overpass_url, self.overpass_cache_dir, self.radius_m, self.types, self.seed,
                self.per_type)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the content of the dataset (not how fast it is built), as they may be
        recorded: URLs without credentials or query values."""
        return redacted({
            "photos": self.source.identity,
            "osm": _osm_identity(self.osm_file) if self.osm_file else f"overpass:{self.overpass_url or ''}",
            "radius_m": self.radius_m,
            "types": list(self.types),
            "seed": self.seed,
            "per_type": self.per_type,
            "rewrite": [self.rewrite_base_url, self.rewrite_model],
        })


def _osm_identity(osm_file: str) -> str | dict[str, Any]:
    """An extract by its path and content (size and a hash of both ends, not its mtime: a copy or a touch is the
    same data), so a build resumed after the extract was replaced refuses instead of mixing two versions of
    the map; a store folder (``NAME.gaea-store``) by its path, its manifest keys it to its extract."""
    path = Path(osm_file).resolve()
    if path.is_dir():
        return str(path)
    identity = extract_identity(path)
    return {"path": str(path), "size": identity["size"], "sha256_ends": identity["sha256_ends"]}


@dataclass
class Progress:
    """Totals as of the last committed chunk (what `progress.jsonl` stores, one line per chunk)."""

    items: int = 0
    qa_bytes: int = 0
    skipped_bytes: int = 0
    photos: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    #: Photos used that lie beyond the OSM extract's area by more than the search radius.
    outside: int = 0


@dataclass
class BuildSummary:
    """The closing figures of a build (also written to `summary.json`)."""

    out: str
    photos_read: int
    photos_used: int
    skipped: dict[str, int]
    records: dict[str, int]
    seconds: float
    resumed_from: int = 0
    #: The OSM extract (or store) read, and how many of the photos used lie outside it (beyond its area by
    #: more than the search radius).
    osm_file: str | None = None
    photos_outside: int = 0

    @property
    def outside_line(self) -> str | None:
        """What to say of photos outside the OSM extract: none of them, some, or all (then plainly)."""
        if not self.photos_outside:
            return None
        if self.photos_outside == self.photos_used:
            return (f"no photo lies within the OSM extract {self.osm_file}: all {self.photos_used} photos used lie "
                    "beyond its area by more than the search radius")
        return (f"{self.photos_outside} of {self.photos_used} photos lie outside the OSM extract {self.osm_file} "
                "(beyond its area by more than the search radius)")

    def lines(self) -> list[str]:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items())) or "none"
        records = ", ".join(f"{qtype} {count}" for qtype, count in self.records.items()) or "none"
        n_skipped = sum(self.skipped.values())
        lines = [
            f"dataset: {self.out}",
            f"photos read: {self.photos_read} (used {self.photos_used}; skipped {n_skipped}: {skipped})",
            f"records: {sum(self.records.values())} ({records})",
            f"time: {self.seconds:.1f} s",
        ]
        if self.resumed_from:
            lines.append(f"resumed after {self.resumed_from} photos already done")
        if self.photos_outside == self.photos_used > 0:
            lines.append(self.outside_line)
        return lines


@dataclass
class ChunkResult:
    items: int
    photos: int
    outside: int
    records: list[QARecord]
    skipped: list[dict[str, str]]


# ---------------------------------------------------------------------------------------------- workers


@dataclass
class _WorkerState:
    key: tuple  # the config's worker_key() when the state was made (it reads the extract and settings now)
    source: Any
    table: FeatureTable | None
    generation: GenerationConfig


_STATE: _WorkerState | None = None


def open_source(config: BuildConfig) -> Any:
    """The OSM source the config names (a local extract loaded once, or an Overpass client)."""
    from gaea import osm

    if config.osm_file:
        return osm.open_osm_source(config.osm_file)
    kwargs: dict[str, Any] = {"url": config.overpass_url}
    if config.overpass_cache_dir:
        kwargs["cache_dir"] = config.overpass_cache_dir
    return osm.OverpassSource(**kwargs)


def _worker_state(config: BuildConfig) -> _WorkerState:
    """This process's OSM source, feature table and generation settings for `config` (opened once)."""
    global _STATE
    key = config.worker_key()
    if _STATE is None or _STATE.key != key:
        source = open_source(config)
        generation = GenerationConfig(types=config.types, seed=config.seed, per_type=config.per_type,
                                      radius_m=config.radius_m, source=source.name)
        _STATE = _WorkerState(key, source, table_for(source), generation)
        # The loaded tables live as long as the process: keep the cyclic GC from rescanning them on every pass.
        gc.freeze()
    return _STATE


@dataclass
class ItemResult:
    """What one input photo gives: its records, or the reason it was skipped."""

    records: list[QARecord]
    skipped: dict[str, str] | None = None
    #: The photo lies beyond the OSM extract's area by more than the search radius.
    outside: bool = False


def process_items(items: list[PhotoItem | Skipped], config: BuildConfig) -> list[ItemResult]:
    """Resolve, look up (one batched query) and generate `items`, in any grouping: a photo's records
    depend on the photo alone (its own seeded generator; lookups give the same features in any batch)."""
    state = _worker_state(config)
    resolved = [resolve_item(item, out_dir=config.out) for item in items]
    photos = [entry for entry in resolved if isinstance(entry, Photo)]
    per_photo = iter(records_per_photo(photos, source=state.source, generation=state.generation, table=state.table))
    return [ItemResult([], entry.to_dict()) if isinstance(entry, Skipped) else
            ItemResult(next(per_photo), outside=_outside(state.source, entry, config.radius_m)) for entry in resolved]


def _outside(source: Any, photo: Photo, radius_m: float) -> bool:
    """Whether `photo` lies beyond the extract's area by more than the radius (ways and areas crossing the
    edge of an extract reach a little beyond the box its header declares). Overpass covers the world."""
    bounds = getattr(source, "bounds", None)
    return bounds is not None and bounds.distance_m(GeoPoint(photo.lat, photo.lon)) > radius_m


def records_per_photo(photos: list[Photo], *, source: Any, generation: GenerationConfig,
                      table: FeatureTable | None = None) -> list[list[QARecord]]:
    """The records of each of `photos`: OSM lookup (batched), reverse geocoding (one vectorised call)
    and templates. `table` (from `lookup.table_for(source)`) is the fast path for a loaded extract."""
    if not photos:
        return []
    points = [GeoPoint(photo.lat, photo.lon) for photo in photos]
    nearby = nearby_for(source, points, generation.radius_m, table=table)
    contexts = contexts_for([p.lat for p in photos], [p.lon for p in photos])
    return [generate_records([photo], [around], [context], generation)
            for photo, around, context in zip(photos, nearby, contexts, strict=True)]


def records_for_photos(photos: list[Photo], *, source: Any, generation: GenerationConfig,
                       table: FeatureTable | None = None) -> list[QARecord]:
    """The records of `photos`, one after the other (see `records_per_photo`)."""
    return [record for records in records_per_photo(photos, source=source, generation=generation, table=table)
            for record in records]


def _chunk_result(results: list[ItemResult]) -> ChunkResult:
    return ChunkResult(items=len(results), photos=sum(result.skipped is None for result in results),
                       outside=sum(result.outside for result in results),
                       records=[record for result in results for record in result.records],
                       skipped=[result.skipped for result in results if result.skipped is not None])


def _chunks(items: Iterable[PhotoItem | Skipped], size: int) -> Iterator[list[PhotoItem | Skipped]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _results_in_order(config: BuildConfig, chunks: Iterator[list[PhotoItem | Skipped]],
                      client: Any) -> Iterator[ChunkResult]:
    """Chunk results in input order, computed by parts of photos that lie together (see `_parts_of`): here,
    or by the workers of a Dask cluster. In one process too, parts of nearby photos read each block of a
    store once while it stays cached, where chunks spread over a country would read it again and again."""
    windows = _windows(chunks, WINDOW_CHUNKS)
    pending: deque[tuple[list[list[PhotoItem | Skipped]], list[list[tuple[int, int]]]]] = deque()
    parts = _parts_of(windows, pending, config.chunk_size)
    if client is None:
        done: Iterator[tuple[int, Any]] = ((0, _process_part(part, config)) for part in parts)
    else:
        from gaea.distributed import map_parts

        done = map_parts(client, _process_part, parts, config.for_workers(), in_order=True)
    window_results: dict[tuple[int, int], ItemResult] = {}
    for _, (slots, results) in done:
        window_results.update(zip(slots, results, strict=True))
        while pending and len(window_results) == sum(len(chunk) for chunk in pending[0][0]):
            window, _ = pending.popleft()
            for c, chunk in enumerate(window):
                yield _chunk_result([window_results.pop((c, i)) for i in range(len(chunk))])


def _process_part(part: tuple[list[tuple[int, int]], list[PhotoItem | Skipped]],
                  config: BuildConfig) -> tuple[list[tuple[int, int]], list[ItemResult]]:
    slots, items = part
    return slots, process_items(items, config)


def _windows(chunks: Iterator[list[PhotoItem | Skipped]], size: int) -> Iterator[list[list[PhotoItem | Skipped]]]:
    while window := list(itertools.islice(chunks, size)):
        yield window


def _parts_of(windows: Iterator[list[list[PhotoItem | Skipped]]], pending: deque,
              size: int) -> Iterator[tuple[list[tuple[int, int]], list[PhotoItem | Skipped]]]:
    """The photos of each window of chunks, sorted by spatial cell and cut into parts of `size`, each
    photo with its slot (chunk, place in the chunk); a window is put in `pending` before its parts."""
    for window in windows:
        slots = [(c, i) for c, chunk in enumerate(window) for i in range(len(chunk))]
        slots.sort(key=lambda slot: _cell_of(window[slot[0]][slot[1]]))
        pending.append((window, slots))
        for start in range(0, len(slots), size):
            part = slots[start:start + size]
            yield part, [window[c][i] for c, i in part]


def _cell_of(item: PhotoItem | Skipped) -> int:
    """The H3 cell of a photo whose position is known before it is read (a manifest row), else 0: those
    are read by the worker (EXIF) and keep their input order."""
    lat, lon = getattr(item, "lat", None), getattr(item, "lon", None)
    if lat is None or lon is None:
        return 0
    import h3.api.basic_int as h3

    try:
        return h3.latlng_to_cell(float(lat), float(lon), PARTITION_RESOLUTION)
    except (ValueError, h3.H3BaseException):  # an out-of-range position: the worker skips it with its reason
        return 0


# ---------------------------------------------------------------------------------------------- resuming


def load_progress(out: Path) -> Progress:
    """The totals of the last committed chunk, or a fresh start.

    Raises
    ------
    BadInputError
        When the photo counts go back somewhere: two builds wrote into `out` at once (a version without the
        run lock), so its records are duplicated and no rerun can mend it.
    """
    progress = Progress()
    for line, entry in enumerate(read_jsonl(out / PROGRESS_FILE), start=1):
        if entry["items"] <= progress.items:
            raise BadInputError(
                f"{out / PROGRESS_FILE}, line {line}: the photo count goes back from {progress.items} to "
                f"{entry['items']}, so two builds wrote here at once and records are duplicated: "
                "rebuild with --overwrite"
            )
        progress = Progress(**entry)
    return progress


def _rewind(out: Path, progress: Progress) -> None:
    """Cut `qa.jsonl` and `skipped.jsonl` back to what the last committed chunk left (drops a torn chunk)."""
    for name, size in ((QA_FILE, progress.qa_bytes), (SKIPPED_FILE, progress.skipped_bytes)):
        path = out / name
        if path.exists() and path.stat().st_size != size:
            log.info("%s: dropping %d bytes of an uncommitted chunk", path, path.stat().st_size - size)
            os.truncate(path, size)
        elif not path.exists():
            path.touch()


# ---------------------------------------------------------------------------------------------- the build


def build_dataset(config: BuildConfig, *, rewriter: Callable[[list[QARecord]], list[QARecord]] | None = None,
                  overwrite: bool = False) -> BuildSummary:
    """Build (or resume building) the dataset `config` describes; return the closing summary.

    `rewriter`, when given, receives each chunk's records before they are written (question paraphrasing).
    The build holds `config.out` (gaea.runs) from start to finish; `overwrite` deletes an earlier build there.
    """
    with open_run(config.out, job=JOB, fingerprint=config.fingerprint(), overwrite=overwrite):
        return _build(config, rewriter)


def _build(config: BuildConfig, rewriter: Callable[[list[QARecord]], list[QARecord]] | None) -> BuildSummary:
    started = time.perf_counter()
    out = config.out
    progress = load_progress(out)
    _rewind(out, progress)
    resumed_from = progress.items
    if rewriter is None and config.rewrite_base_url:
        from data_pipeline.rewrite import QuestionRewriter

        rewriter = QuestionRewriter(base_url=config.rewrite_base_url, model=config.rewrite_model,
                                    api_key=config.rewrite_api_key)
    items = itertools.islice(photo_items(config.source), progress.items, None)
    bar = tqdm(initial=progress.items, unit="photo", desc="gaea data build", disable=not config.progress)
    with JsonlAppender(out / QA_FILE) as qa, JsonlAppender(out / SKIPPED_FILE) as skipped_out, \
            JsonlAppender(out / PROGRESS_FILE) as progress_out, cluster(config.scheduler, config.workers) as client:
        for result in _results_in_order(config, _chunks(items, config.chunk_size), client):
            records = rewriter(result.records) if rewriter else result.records
            qa.write_many(record.to_dict() for record in records)
            skipped_out.write_many(result.skipped)
            progress = _advanced(progress, result, records, out)
            progress_out.write(asdict(progress))
            bar.update(result.items)
    bar.close()
    summary = BuildSummary(
        out=str(out), photos_read=progress.items, photos_used=progress.photos, skipped=progress.skipped,
        records=progress.records, seconds=time.perf_counter() - started, resumed_from=resumed_from,
        osm_file=config.osm_file, photos_outside=progress.outside,
    )
    _finish(config, summary)
    return summary


def _advanced(progress: Progress, result: ChunkResult, records: list[QARecord], out: Path) -> Progress:
    skipped = Counter(progress.skipped) + Counter(entry["reason"] for entry in result.skipped)
    counts = Counter(progress.records) + Counter(record.question_type for record in records)
    return Progress(
        items=progress.items + result.items,
        qa_bytes=(out / QA_FILE).stat().st_size,
        skipped_bytes=(out / SKIPPED_FILE).stat().st_size,
        photos=progress.photos + result.photos,
        outside=progress.outside + result.outside,
        skipped=dict(sorted(skipped.items())),
        records={qtype: counts[qtype] for qtype in ALL_TYPES if counts[qtype]},
    )


def _finish(config: BuildConfig, summary: BuildSummary) -> None:
    """Summary, dataset card and (optionally) the Hugging Face copy, all rebuilt from the files on disk."""
    from data_pipeline.card import write_card

    atomic_write_json(config.out / SUMMARY_FILE, asdict(summary))
    write_card(config.out, config=config.fingerprint())
    if config.hf_dataset:
        from data_pipeline.export import save_hf_dataset

        save_hf_dataset(config.out, config.out / "hf")
