"""Runs spread over processes and machines, on Dask (`dask.distributed`).

`gaea data build` and `gaea gallery build` take ``--scheduler ADDRESS`` (a running Dask cluster:
dask-jobqueue, Kubernetes, ``dask scheduler`` + ``dask worker``, any) or ``--workers N`` (a cluster of N
worker processes on this machine, started for the run and bound to 127.0.0.1; 1, the default, runs in
this process). This is the one way of
running in parallel: local and remote runs take the same code path, and a worker that dies mid-run has
its parts re-run elsewhere by the scheduler.

The process that holds the run directory (gaea.runs) stays the only writer: workers compute parts (a
chunk of photos) and send the results back, the client commits each part in the run's resumable unit as
it arrives. A killed worker therefore loses only the parts it was computing, and a killed client leaves
every committed part for the rerun. Workers read the photos (and OSM files) by the paths the client
names, so a cluster of several machines needs them on a shared file system.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gaea.errors import ConfigError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: Parts in flight per worker: enough to keep each busy while its last result travels, few enough that
#: memory holds only a handful of parts whatever the size of the run.
PARTS_PER_WORKER = 2
#: Seconds to wait for a --scheduler to answer.
CONNECT_TIMEOUT_S = 30


def is_distributed(scheduler: str | None = None, workers: int | None = None) -> bool:
    """Whether `cluster` of these options is a Dask cluster (or a ConfigError when they cannot go together)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if scheduler and workers and workers > 1:
        raise ConfigError("--scheduler and --workers exclude each other (the cluster at --scheduler has its workers)")
    return bool(scheduler) or (workers or 1) > 1


@contextlib.contextmanager
def cluster(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask ``Client`` of the cluster at `scheduler`, or of `workers` local processes, for the block;
    None when neither is given, or one worker (the run stays in this process)."""
    if not is_distributed(scheduler, workers):
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({error})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                      dashboard_address=None) as local, Client(local) as client:
        yield client


def map_parts(client: Any, function: Callable[..., Any], parts: Iterable[Any], *args: Any,
              in_order: bool = False) -> Iterator[tuple[int, Any]]:
    """``(number, function(part, *args))`` for each part of `parts`, as the cluster finishes them, or in the
    order of `parts` with ``in_order`` (parts finished early wait in memory).

    At most `PARTS_PER_WORKER` parts per worker are in flight, and in order at most as many wait, so
    memory holds a handful of parts whatever the size of the run. `args` (small settings) go with every part
    rather than scattered once: scattered data lives only on the workers that hold it, so losing them (a
    killed worker, one that joined after the scatter) cancelled the parts that needed it. The
    first part that fails for good (the scheduler re-runs the parts of a lost worker) raises its error here.
    """
    from distributed import as_completed

    window = PARTS_PER_WORKER * max(1, len(client.scheduler_info().get("workers", {})))
    numbered = enumerate(parts)
    running = as_completed()
    numbers: dict[Any, int] = {}
    waiting: dict[int, Any] = {}
    following = 0

    def refill() -> None:
        while running.count() < window and len(waiting) < window:
            entry = next(numbered, None)
            if entry is None:
                return
            future = client.submit(function, entry[1], *args, pure=False)
            numbers[future] = entry[0]
            running.add(future)

    refill()
    for future in running:
        number, result = numbers.pop(future), future.result()
        future.release()
        if not in_order:
            yield number, result
        else:
            waiting[number] = result
            while following in waiting:
                yield following, waiting.pop(following)
                following += 1
        refill()
