"""Cleaning untrusted OpenStreetMap text before it reaches a prompt, a log or a page."""

from __future__ import annotations

import unicodedata

from gaea.errors import BadInputError

ELLIPSIS = "\u2026"


def sanitize_text(value: object, *, max_len: int = 120) -> str:
    """Make an OSM tag value safe to show to a model or a person.

    OSM text is written by anyone: it can carry control characters, bidirectional overrides
    (which reorder what a reader sees), zero-width characters or very long values. This drops
    every character of Unicode category ``C*`` (control, format, surrogate, private use,
    unassigned), turns every run of whitespace (line breaks included) into one space, trims,
    and cuts the result to `max_len` characters, the last of which is then an ellipsis.

    Parameters
    ----------
    value
        Any value; ``None`` gives ``""``, anything else is passed through ``str()``.
    max_len
        Largest length of the result, at least 1.

    Returns
    -------
    str
        The cleaned text, ``""`` when nothing printable is left.
    """
    if max_len < 1:
        raise BadInputError(f"sanitize_text: max_len must be at least 1, got {max_len!r}")
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", value if isinstance(value, str) else str(value))
    if not text.isprintable():  # printable text has no C* character and no whitespace but the space
        # Whitespace controls (\n, \t, ...) become spaces so that words stay apart; other C* go.
        text = "".join(" " if char.isspace() else char for char in text if char.isspace() or not _is_other(char))
    text = " ".join(text.split())
    if len(text) <= max_len:
        return text
    return text[: max_len - 1].rstrip() + ELLIPSIS


def _is_other(char: str) -> bool:
    return unicodedata.category(char).startswith("C")
