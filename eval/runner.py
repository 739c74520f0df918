"""Running a task over many items, resumably.

Server backends get bounded concurrency (threads: the work is waiting on HTTP); in-process models run
one item at a time, since one process holds the model. Each finished item is appended to `samples.jsonl`
as one whole line (gaea.io.JsonlAppender); a rerun reads the file and skips the ids already there, so a
killed run loses at most the items in flight and no item is ever scored twice.

On a Dask cluster (`OnCluster`, eval.cluster) the workers answer parts of the items and this process turns
the answers into samples and appends them, in item order: it stays the only writer of `samples.jsonl`, and a
worker killed mid-run loses only the part it was answering, which the scheduler gives to another worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from gaea.io import BadLine, JsonlAppender, read_jsonl

log = logging.getLogger(__name__)


class HasId(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=HasId)


@dataclass(frozen=True)
class OnCluster:
    """The work of a run on a Dask cluster: ``answer(part, recipe)`` runs on the workers (a list of items in,
    their answers out, in order), ``finish(item, answer)`` here turns each answer into the item's sample."""

    client: Any
    answer: Callable[[list[Any], Any], list[Any]]
    recipe: Any
    finish: Callable[[Any, Any], dict[str, Any]]
    #: Items per part: what one task answers, and the most a killed worker makes the scheduler redo.
    part_size: int = 1


def finished_samples(samples_path: str | Path) -> dict[str, dict[str, Any]]:
    """The samples already in `samples_path`, by id (the last line of an id wins: a retried item's new sample)."""
    def redo(line: BadLine) -> None:
        log.warning("%s; the item there is done again", line)

    return {str(sample["id"]): sample for sample in read_jsonl(samples_path, on_bad=redo) if "id" in sample}


def is_transient_failure(sample: dict[str, Any]) -> bool:
    """Whether a sample records a server failure (model or judge unreachable / overloaded after its retries),
    which a rerun should try again, unlike a judge's unreadable reply or a broken image."""
    return str(sample.get("error") or "").startswith(("model:", "judge backend:"))


def run_resumable(
    items: Sequence[ItemT],
    work: Callable[[ItemT], dict[str, Any]] | OnCluster,
    *,
    samples_path: str | Path,
    concurrency: int = 1,
    desc: str = "items",
    redo: Callable[[dict[str, Any]], bool] = is_transient_failure,
) -> list[dict[str, Any]]:
    """Apply `work` to every item whose id is not yet in `samples_path`; return the samples of all items.

    Parameters
    ----------
    items
        The items, each with a unique `id`.
    work
        Turns one item into its sample: a JSON-serialisable dict whose ``"id"`` is the item's id. An
        exception from `work` stops the run (finished items are kept); per-item failures that should not
        stop it are for `work` to record in the sample. An `OnCluster` has the cluster's workers answer.
    samples_path
        The `samples.jsonl` to resume from and append to.
    concurrency
        Items in flight at once (1: in order, in this thread); on a cluster, answers turned into samples at once
        (a judge's requests).
    redo
        Which finished samples a rerun does again (by default those of server failures).

    Returns
    -------
    list of dict
        One sample per item, in the order of `items`.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    done = finished_samples(samples_path)
    todo = [item for item in items if item.id not in done or redo(done[item.id])]
    if done:
        log.info("resuming: %d of %d items to do; the rest are in %s", len(todo), len(items), samples_path)
    with JsonlAppender(samples_path) as appender, tqdm(total=len(todo), desc=desc, unit="item") as progress:

        def record(samples: list[dict[str, Any]]) -> None:
            appender.write_many(samples)
            done.update((str(sample["id"]), sample) for sample in samples)
            progress.update(len(samples))

        if isinstance(work, OnCluster):
            _run_on_cluster(todo, work, record, concurrency=concurrency)
        elif concurrency == 1:
            for item in todo:
                record([work(item)])
        else:
            with _BatchWriter(record) as writer:
                _run_threaded(todo, work, writer.put, concurrency=concurrency)
    return [done[item.id] for item in items]


class _BatchWriter:
    """Writes samples from a thread of its own, in batches of whatever has finished meanwhile.

    The dispatcher only queues a finished sample and goes on submitting work, so the disk (one fsync per
    batch, milliseconds) never holds back the requests in flight. A sample is on disk once its batch is
    written; closing waits for the queue to drain.
    """

    _STOP = object()

    def __init__(self, record: Callable[[list[dict[str, Any]]], None]) -> None:
        self._record = record
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="eval-writer", daemon=True)
        self._thread.start()

    def put(self, sample: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(sample)

    def _drain(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = batch[-1] is self._STOP
            samples = [sample for sample in batch if sample is not self._STOP]
            if samples and self._error is None:
                try:
                    self._record(samples)
                except BaseException as error:  # handed to the dispatcher, which stops the run
                    self._error = error

    def __enter__(self) -> _BatchWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(self._STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _run_threaded(
    items: Iterable[ItemT],
    work: Callable[[ItemT], dict[str, Any]],
    record: Callable[[dict[str, Any]], None],
    *,
    concurrency: int,
) -> None:
    """At most `concurrency` items in flight; the first failure cancels what has not started and is raised."""
    pending: set[Future] = set()
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        try:
            while True:
                while len(pending) < concurrency:
                    item = next(iterator, None)
                    if item is None:
                        break
                    pending.add(pool.submit(work, item))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failures = [future.exception() for future in finished if future.exception() is not None]
                for future in finished:
                    if future.exception() is None:
                        record(future.result())
                if failures:
                    raise failures[0]
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _run_on_cluster(todo: Sequence[ItemT], work: OnCluster, record: Callable[[list[dict[str, Any]]], None], *,
                    concurrency: int) -> None:
    """Parts of `todo` answered by the cluster; each part's samples recorded here in item order."""
    from gaea.distributed import map_parts

    parts = [list(todo[start:start + work.part_size]) for start in range(0, len(todo), work.part_size)]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval-finish") as pool:
        for number, answers in map_parts(work.client, work.answer, parts, work.recipe, in_order=True):
            record(list(pool.map(work.finish, parts[number], answers)))
