"""The run journal every resumable job shares: one process per run directory, one fingerprint per run.

A run directory (the ``--out`` of `gaea data build`, `gaea gallery build` and `gaea eval`, a fine-tuning
``output_dir``) holds two files of ours beside the job's work:

    run.lock   locked by the process working there, and holding its PID for the refusal a second run gets
    run.json   the job and its fingerprint: what must not change between resumes (e.g. a gallery's encoder)

A second run into a directory in use refuses in one line naming the holder's PID. The lock is the kernel's
(``flock``): it ends with the holder's process, so the lock of a run killed with SIGKILL is free for the
next run at once, and no PID can be mistaken for a live holder. A resumed run must bring the fingerprint
it was started with, or it is refused with what changed; ``overwrite`` starts the directory afresh.

Each job commits its finished work atomically with `gaea.io` in the unit it resumes by (eval: one whole
JSONL line per item; data build: a chunk's records, then its progress line with the files' byte sizes;
gallery: a chunk's ``.npy``, then its ``.jsonl``), so a rerun holding the lock goes on after the last commit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gaea.errors import BadInputError, ConfigError, GaeaError, RunInUseError
from gaea.io import atomic_write_json

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
JOURNAL_FILE = "run.json"
_OURS = (LOCK_FILE, JOURNAL_FILE)

# Descriptors of the run locks this process holds. A forked child (the data build's worker pool) closes its
# copies at once: a flock lasts while any copy of its descriptor is open, so an orphaned worker of a killed
# run would otherwise keep the directory locked.
_HELD: set[int] = set()
_HELD_GUARD = threading.Lock()


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class RunLock:
    """An exclusive, non-blocking lock on a run directory, held from `acquire` (or ``with``) to `release`.

    Hand-written on ``fcntl.flock`` rather than taken from ``filelock``: that library's flock lock does not
    record its holder (it knows a PID only in its soft-lock fallback, which a killed holder leaves stale),
    and the refusal must name the holder's PID.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise RunInUseError naming the PID of the process that holds it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise BadInputError(f"{self.root}: cannot be a run directory ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GaeaError(f"{self.root}: cannot lock the run directory ({error.strerror})") from error
            pid = holder_pid(self.root, wait_s=1.0)
            raise RunInUseError(
                f"{self.root} is in use by another run (PID {pid if pid is not None else 'unknown'}): "
                "wait for it to end, or use another --out"
            ) from None
        previous = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if previous:  # a clean release empties the file: the last holder was killed mid-run
            log.warning("%s: the run of PID %s ended without finishing; this run takes over", self.root, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        with _HELD_GUARD:
            _HELD.add(fd)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        with _HELD_GUARD:
            if fd is None or fd not in _HELD:  # not ours (never taken, or inherited through a fork)
                return
            _HELD.discard(fd)
        # Emptied, never deleted: a waiter may have the file open, and a new file would be a second lock.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(root: str | Path, *, wait_s: float = 0.0) -> int | None:
    """The PID written in a run directory's lock file (None when there is none).

    The holder writes its PID just after taking the lock; `wait_s` gives it that moment.
    """
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int((Path(root) / LOCK_FILE).read_text(encoding="ascii").strip())
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


@contextlib.contextmanager
def open_run(root: str | Path, *, job: str, fingerprint: dict[str, Any], overwrite: bool = False) -> Iterator[Path]:
    """Hold the run directory `root` for `job` (e.g. ``"gaea gallery build"``) while the block runs.

    Parameters
    ----------
    root
        The run directory (created when missing).
    job
        The command the directory belongs to; another command's directory is refused.
    fingerprint
        What a resumed run must share with the run that started the directory (JSON values).
    overwrite
        Delete the work of an earlier run there and start afresh.

    Raises
    ------
    RunInUseError
        When another process holds the directory.
    ConfigError
        When the directory holds the work of another job or fingerprint, or files that are not a run's.
    """
    root = Path(root)
    with RunLock(root):
        _start(root, job, json.loads(json.dumps(fingerprint)), overwrite=overwrite)
        yield root


def _start(root: Path, job: str, fingerprint: dict[str, Any], *, overwrite: bool) -> None:
    """Check the directory's journal against this run (or start it afresh) and write this run's journal."""
    journal_path = root / JOURNAL_FILE
    journal = _read_journal(journal_path)
    if overwrite and journal is not None:
        _clear(root)
    elif _holds_work(root):
        if journal is None:
            raise ConfigError(f"{root} holds files but no {JOURNAL_FILE}, so it is not a gaea run directory "
                              "(or one from an older version): use another --out, or empty it")
        _check(root, journal, job, fingerprint)
    atomic_write_json(journal_path, {"job": job, "fingerprint": fingerprint})


def _read_journal(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: unreadable run journal ({error}): use another --out or --overwrite") from None
    if not isinstance(journal, dict) or not isinstance(journal.get("fingerprint"), dict):
        raise ConfigError(f"{path}: not a run journal of this version (no fingerprint): "
                          "use another --out or --overwrite")
    return journal


def _check(root: Path, journal: dict[str, Any], job: str, fingerprint: dict[str, Any]) -> None:
    if journal.get("job") != job:
        raise ConfigError(f"{root} holds a run of `{journal.get('job')}`, not of `{job}`: use another --out")
    before = journal["fingerprint"]
    changed = [key for key in {**before, **fingerprint} if before.get(key) != fingerprint.get(key)]
    if changed:
        was = ", ".join(f"{key} {_shown(before.get(key))}" for key in changed)
        now = ", ".join(f"{key} {_shown(fingerprint.get(key))}" for key in changed)
        raise ConfigError(f"{root} was made with {was}; this run asks for {now}: use another --out or --overwrite")


def _shown(value: Any) -> str:
    return "none" if value is None else json.dumps(value, ensure_ascii=False)


def _holds_work(root: Path) -> bool:
    """Whether anything but our own files and empty files or folders is there (a run that stopped before
    committing anything pins no fingerprint)."""
    for path in root.rglob("*"):
        if path.parent == root and path.name in _OURS:
            continue
        if not path.is_dir() and (path.is_symlink() or path.stat().st_size > 0):
            return True
    return False


def _clear(root: Path) -> None:
    log.warning("%s: --overwrite: deleting the earlier run's work", root)
    for path in root.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
