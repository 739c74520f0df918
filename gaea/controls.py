"""Terminal control sequences taken out of text that servers send, before it reaches a terminal or a log.

A model server's answer is printed as it streams (`gaea ask`) and quoted in errors; an ANSI escape in
it could recolour, hide or rewrite what the user sees (``ESC[2K``, ``ESC]8;;`` links, ``\\r``
overprinting). ECMA-48 sequences (CSI, OSC, DCS and friends, 7- and 8-bit) and every other C0 / C1
control except newline and tab are removed. Hand-written because the libraries that strip ANSI codes
work on whole strings, while a stream can cut a sequence between two pieces: `ControlStripper` holds
back an unfinished one until the next piece completes it.
"""

from __future__ import annotations

import re

# CSI (ESC [ or 0x9B) params / intermediates / final byte; OSC, DCS, SOS, PM, APC (ESC ] P X ^ _ or their
# 8-bit forms) up to BEL or ST; any other escape (not one of those openers, which need more to be complete).
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*(?![\[\]PX^_])[0-~]",
    re.S,
)
#: The start of a sequence that the end of the text cuts short (what a later piece may complete).
_UNFINISHED = re.compile(
    r"(?:(?:\x1b\[|\x9b)[0-?]*[ -/]*"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])(?:[^\x07\x1b\x9c]|\x1b(?!\\))*\x1b?"
    r"|\x1b[ -/]*)\Z",
    re.S,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: An unfinished sequence longer than this is not held back any more (its opener is dropped, the rest shown).
MAX_PENDING_CHARS = 4096


def strip_controls(text: str) -> str:
    """`text` without terminal control sequences and control characters (newline and tab kept)."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text.replace("\r\n", "\n")))


class ControlStripper:
    """`strip_controls` for text that arrives in pieces: `feed` each piece, then `flush` at the end."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, piece: str) -> str:
        """The clean text that can be shown now (an unfinished sequence at the end is kept for later)."""
        text = self._pending + piece
        unfinished = _UNFINISHED.search(text)
        if unfinished and len(text) - unfinished.start() <= MAX_PENDING_CHARS:
            text, self._pending = text[: unfinished.start()], text[unfinished.start() :]
        else:
            self._pending = ""
        if text.endswith("\r"):  # the "\n" of a "\r\n" may come in the next piece
            text, self._pending = text[:-1], "\r" + self._pending
        return strip_controls(text)

    def flush(self) -> str:
        """What is left at the end of the text (an unfinished sequence is dropped)."""
        pending, self._pending = self._pending, ""
        return strip_controls(pending)
