"""JSON inside model text: the one reader used for answers (`gaea.geo`), the assistant and the eval judge.

Models put JSON in fenced blocks, inline in prose, nested, and often not quite JSON: unquoted values
(``"city": San Francisco``), single quotes, trailing commas, a reply cut off before its closing brace.
`find_json` finds every top-level object (and every fenced array) in order of appearance; in the default
lenient mode what `json.loads` refuses is read by json-repair (the reader GAEA's own scoring uses). With
``strict=True`` only real JSON counts, which is what a judge reply must be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import json_repair

# json-repair is a recursive parser: inputs longer than this are not worth repairing (and never answers).
_REPAIR_LIMIT = 20_000
_FENCED_ARRAY = re.compile(r"```[A-Za-z]*[ \t]*\n?\s*(\[.*?\])\s*```", re.DOTALL)


@dataclass(frozen=True)
class JsonSpan:
    """One JSON value found in a text: the decoded value and where it stands (``text[start:end]``)."""

    value: Any
    start: int
    end: int
    repaired: bool = False


def find_json(text: str, *, strict: bool = False) -> list[JsonSpan]:
    """The JSON objects in `text` (and arrays of objects, and any array in a fenced block), in order of appearance.

    Parameters
    ----------
    text : str
        Free text from a model: prose with JSON embedded, fenced (```json ... ```), or JSON alone.
    strict : bool
        Only what `json.loads` reads. Lenient (the default) also reads what json-repair can mend,
        including an object left open at the end of the text.

    Returns
    -------
    list of JsonSpan
        Top-level values only (objects nested in another are part of it), each decoded once.
    """
    if not isinstance(text, str):
        return []
    found = []
    for start, end in sorted(set(_object_spans(text, strict=strict)) | set(_fenced_arrays(text))):
        if found and start < found[-1].end:
            continue  # inside a value already found (a fenced array of objects)
        decoded = _decode(text[start:end], strict=strict)
        if decoded is not None:
            found.append(JsonSpan(decoded[0], start, end, decoded[1]))
    return found


def json_values(text: str, *, strict: bool = False) -> list[Any]:
    """The decoded values of `find_json`, in order of appearance."""
    return [span.value for span in find_json(text, strict=strict)]


def last_object_with(text: str, keys: tuple[str, ...], *, strict: bool = False) -> dict[str, Any] | None:
    """The last (the final, where a model revises itself) object in `text` that has all of `keys`."""
    for value in reversed(json_values(text, strict=strict)):
        if isinstance(value, dict) and all(key in value for key in keys):
            return value
    return None


def _decode(snippet: str, *, strict: bool) -> tuple[Any, bool] | None:
    """(value, repaired) of one snippet; None when it holds no object or array."""
    try:
        value = json.loads(snippet)
        repaired = False
    except (ValueError, RecursionError):
        if strict or len(snippet) > _REPAIR_LIMIT:
            return None
        try:
            value = json_repair.loads(snippet)
        except (ValueError, RecursionError, TypeError, IndexError):
            return None
        repaired = True
    if not isinstance(value, (dict, list)) or not value:
        return None
    if repaired and isinstance(value, list) and not snippet.lstrip().startswith("["):
        return None  # json-repair read "{text here}" as ["text here}"]: prose in braces, not JSON
    return value, repaired


def _object_spans(text: str, *, strict: bool) -> Iterator[tuple[int, int]]:
    """(start, end) of every top-level {...}, braces inside double-quoted strings ignored.

    Hand-written because no library finds JSON inside prose: json-repair reads one value and skips
    what it cannot. Lenient scanning ends a string at a line break (JSON strings hold none, and a
    stray quote such as ``{\\"`` must not swallow the rest of the answer) and also yields an object
    still open at the end of the text (a reply cut off by the token limit), then the objects after
    its opening brace (in case that brace was a stray one).
    """
    open_at = yield from _closed_spans(text, 0, strict=strict)
    if open_at is not None and not strict:
        yield open_at, len(text)
        yield from _closed_spans(text, open_at + 1, strict=strict)


_OBJECT_ARRAY = re.compile(r"\[\s*\{")


def _closed_spans(text: str, offset: int, *, strict: bool) -> Iterator[tuple[int, int]]:
    """The closed top-level objects (and arrays of objects: "[{...}, {...}]") from `offset` on; returns
    the start of one left open, if any."""
    depth, start, in_string, escaped = 0, -1, False, False
    for index in range(offset, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"' or (char == "\n" and not strict):
                in_string = False
            continue
        if char == '"' and depth:
            in_string = True
        elif char == "{" or (char == "[" and (depth or _OBJECT_ARRAY.match(text, index))):
            if depth == 0:
                start = index
            depth += 1
        elif char in "}]" and depth:
            depth -= 1
            if depth == 0:
                yield start, index + 1
    return start if depth else None


def _fenced_arrays(text: str) -> Iterator[tuple[int, int]]:
    for match in _FENCED_ARRAY.finditer(text):
        yield match.start(1), match.end(1)
