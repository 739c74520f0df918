"""Small file helpers: writes that never leave a half-written file behind, JSON lines read with a clear
word on every bad line, file names that can always be printed."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaea.errors import BadInputError

log = logging.getLogger(__name__)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


class JsonlAppender:
    """Appends one JSON record per line; each line is written whole and flushed to disk.

    The one writer of JSON lines in the project (``atomic_write_jsonl`` writes whole files through it).
    A reader after a crash sees only complete lines, except perhaps a torn last one, which
    `read_jsonl` skips; reopening truncates such a torn tail before appending.
    """

    def __init__(self, path: str | Path, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_torn_tail(self.path)
        self._handle = open(self.path, "ab")
        self._fsync = fsync

    def write(self, record: Any) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[Any]) -> None:
        """Append `records`, then flush (and fsync) once."""
        for record in records:
            self._handle.write(json.dumps(record, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
        self._handle.flush()
        if self._fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Write `records` as a JSON-lines file that readers see whole or not at all; how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    counted = _Counted(records)
    try:
        with JsonlAppender(tmp) as out:
            out.write_many(counted)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counted.count


class _Counted:
    def __init__(self, items: Iterable[Any]) -> None:
        self.items, self.count = items, 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.count += 1
            yield item


def _truncate_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


@dataclass(frozen=True)
class BadLine:
    """A line of a JSON-lines file that holds no JSON object; `str()` says "FILE, line N: problem"."""

    path: Path
    number: int
    problem: str
    #: An unterminated last line that does not parse: what an interrupted append leaves.
    torn: bool = False

    def __str__(self) -> str:
        return f"{readable_name(str(self.path))}, line {self.number}: {self.problem}"


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """Each non-blank line's number with its JSON object, or a `BadLine` saying what is wrong with it.

    Lines are decoded one by one, so one line that is not UTF-8 spoils only itself. A last line without
    its newline that does not parse is reported as incomplete (what an interrupted append leaves).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield number, _json_object(path, number, raw)


def _json_object(path: Path, number: int, raw: bytes) -> dict[str, Any] | BadLine:
    try:
        value = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        if not raw.endswith(b"\n"):
            return BadLine(path, number, "incomplete last line (an interrupted write?)", torn=True)
        if isinstance(error, UnicodeDecodeError):
            return BadLine(path, number, f"not UTF-8 text (byte {raw[error.start]:#04x} at byte {error.start + 1})")
        return BadLine(path, number, f"not valid JSON ({error.msg} at character {error.pos + 1})")
    if not isinstance(value, dict):
        return BadLine(path, number, f"a JSON {_json_kind(value)}, not an object")
    return value


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def read_jsonl(path: str | Path, *, on_bad: Callable[[BadLine], None] | None = None) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (none when it does not exist), skipping blank lines.

    A torn last line (an interrupted append, which `JsonlAppender` cuts off on reopening) is left out.
    Any other bad line raises BadInputError("FILE, line N: problem"), or, with `on_bad`, is handed to it
    and skipped: for files where each line is one item among many.
    """
    path = Path(path)
    if not path.exists():
        return
    for _, value in jsonl_lines(path):
        if not isinstance(value, BadLine):
            yield value
        elif value.torn:
            log.debug("%s", value)
        elif on_bad is not None:
            on_bad(value)
        else:
            raise BadInputError(str(value))


def read_json(path: str | Path) -> Any:
    """The JSON value in a file; a BadInputError naming the file when it is not valid JSON text."""
    from gaea.errors import BadInputError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from error


def readable_name(name: str) -> str:
    """`name` as text that can be printed and written anywhere.

    File names are bytes on Linux: Python hands undecodable bytes over as lone surrogates, which no UTF-8
    file or terminal accepts; they are shown as backslash escapes (``caf\\xe9.jpg``) instead.
    """
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that did not come from bytes (e.g. "\\ud800" in a JSON string)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
