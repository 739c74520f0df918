"""What the wording of a model answer says beyond its numbers: clean-up (mojibake, typography), where the
final answer starts, refusals, error messages, placeholders, hedges and ranges.

These are phrase lists, not parsers: the patterns name the words real answers use to refuse ("I'm
unable to view images"), to conclude ("My best guess:"), to disown a value ("a placeholder") or to give a
range ("30°N to 50°N"), so that the readers in `gaea.geo.answers` can tell the answer from the reasoning.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

# Typographic variants of the symbols the coordinate patterns look for, each one character for one, so
# that offsets found in the repaired text stay valid in the cleaned one. Markdown emphasis becomes space.
_TYPOGRAPHY = str.maketrans(
    {
        "′": "'", "’": "'", "‘": "'", "´": "'", "″": '"', "“": '"', "”": '"', "º": "°", "˚": "°",
        "−": "-", "–": "-", "‐": "-", "‑": "-", "‒": "-", "*": " ",
    }
)  # fmt: skip


def repair_text(text: str) -> str:
    """The text with mojibake undone ("Â°" -> "°", "SÃ£o" -> "São"; UTF-8 once read as cp1252) by ftfy."""
    if text.isascii():
        return text  # nothing to repair: mojibake is made of non-ASCII characters
    return unicodedata.normalize("NFC", ftfy.fix_encoding(text))


def plain_text(repaired: str) -> str:
    """`repair_text` output with primes, quotes, minus signs and markdown made plain ASCII, offsets kept."""
    return repaired.translate(_TYPOGRAPHY)


# ---------------------------------------------------------------------------------------------------------
# Where the final answer starts.

_FINAL = re.compile(
    r"(?i)\b(?:final|best|top|refined|revised|updated|educated|overall|my|our)\s+"
    r"(?:answer|guess|estimate|estimation|prediction|location|coordinates|pick|choice|bet)\b"
    r"|\banswer\s*[:=]|\bin\s+conclusion\b|\bconclusion\b|\bto\s+conclude\b|\btherefore\b|\bthus\b|\bhence\b"
    r"|\bi\s*(?:would|'d|will|'ll)\s+(?:estimate|guess|say|place|put|go\s+with|pinpoint)\b"
    r"|\bi\s+(?:estimate|conclude|guess)\b|\bmost\s+likely\s+(?:location|place|answer|candidate|match)\b"
)


def final_markers(text: str) -> list[int]:
    """Where each phrase that introduces a conclusion ("Final answer", "My best guess", "Therefore") ends."""
    return [match.end() for match in _FINAL.finditer(text)]


def deciding(starts: list[int], markers: list[int]) -> int | None:
    """Which of the candidates found at `starts` (in order) is the final answer by the markers alone:
    the first candidate after the last marker that is followed by a candidate; None without such a marker."""
    for marker in reversed(markers):
        after = [index for index, start in enumerate(starts) if start >= marker]
        if after:
            return after[0]
    return None


# ---------------------------------------------------------------------------------------------------------
# Refusals, error messages and disowned values.

_REFUSAL = re.compile(
    r"(?i)\b(?:i|we)\s*(?:am|'m|are|'re)?\s*(?:really\s+)?"
    r"(?:cannot|can\s*not|can't|could\s*not|couldn't|unable|not\s+able|do\s+not|don't|won't|will\s+not)\s+"
    r"(?:to\s+)?(?:confidently\s+|reliably\s+|accurately\s+|currently\s+|directly\s+)?"
    r"(?:determine|identify|provide|pinpoint|tell|say|help|assist|view|see|analy[sz]e|access|process|fulfil+|"
    r"comply|guess|give|make|locate|know|offer|share|answer|geolocate|look\s+at|open|interpret)\b"
    r"|\b(?:impossible|not\s+possible|no\s+way)\s+(?:for\s+me\s+)?to\s+(?:accurately\s+|confidently\s+)?"
    r"(?:determine|identify|provide|pinpoint|tell|say|know|give|guess|locate)\b"
    r"|\bi\s+(?:do\s+not|don't)\s+have\s+(?:enough|sufficient|the\s+ability|access)\b"
    r"|\b(?:as\s+an\s+ai|i'm\s+sorry|i\s+am\s+sorry|i\s+apologi[sz]e)\b"
)


_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")
# A refusal of precision ("I cannot pinpoint the exact street") is no refusal to answer.
_PARTIAL = re.compile(
    r"(?i)\b(?:exact|exactly|precise|precisely|specific|specifically|street|address|neighbou?rhood|100)"
)
_BLIND = re.compile(r"(?i)\b(?:images?|photos?|photographs?|pictures?|visual\s+content)\b")


def _refusals(text: str, position: int = 0) -> list[tuple[int, str]]:
    """(start, kind) of each refusal after `position`: "blind" (the model says it cannot see the image),
    "total" (it declines to answer), or "partial" (it declines only precision)."""
    found = []
    for match in _REFUSAL.finditer(text, position):
        end = _SENTENCE_END.search(text, match.end())
        rest = text[match.start() : end.start() if end else len(text)]
        if match[0].lower().rstrip().endswith(("view", "see", "analyze", "analyse", "access", "open", "look at")) and (
            _BLIND.search(rest)
        ):
            found.append((match.start(), "blind"))
        else:
            found.append((match.start(), "partial" if _PARTIAL.search(rest) else "total"))
    return found


def cannot_see_image(text: str) -> bool:
    """Whether the answer says the model cannot see or analyse the image: nothing it names is about it."""
    return any(kind == "blind" for _, kind in _refusals(text))


def refusal_after(text: str, position: int) -> bool:
    """Whether the answer declines to answer after `position` ("... Therefore, I cannot provide
    coordinates or a city"): a location named before such a refusal is a hint, not an answer; one named
    after it ("I can't be sure, but it is Petra, Jordan") stands, as does one followed only by a refusal
    of precision ("I cannot pinpoint the exact street")."""
    return any(kind != "partial" for _, kind in _refusals(text, position))


def refuses(text: str) -> bool:
    """Whether the answer declines to answer anywhere (precision aside)."""
    return refusal_after(text, 0)


_ERROR = re.compile(
    r"(?is)^\s*(?:error|exception|traceback|\{\s*\"error\")\b"
    r"|\btraceback \(most recent call last\)"
    r"|\b(?:invalid_request_error|rate[ _-]limit(?:ed)?|quota\s+exceeded|resource[ _]exhausted|"
    r"internal\s+server\s+error|service\s+unavailable|bad\s+gateway|gateway\s+time-?out|finish_reason|"
    r"context[ _]length[ _]exceeded|maximum\s+context\s+length|content[ _]filter|api[ _]?key)\b"
)
_ERROR_LIMIT = 600  # longer texts are answers that may quote such words, not error messages


def is_error_message(text: str) -> bool:
    """Whether `text` is an API or SDK error stored where an answer should be (not an answer at all)."""
    return len(text) <= _ERROR_LIMIT and _ERROR.search(text) is not None


_DISOWNED = re.compile(
    r"(?i)\b(?:placeholders?|dummy|fictitious|fictional|made[ -]up|arbitrary|not\s+real|example\s+values?)\b"
)


def disowns_values(text: str, position: int) -> bool:
    """Whether the text after `position` calls the values given there placeholders ("This is a placeholder
    for the coordinates")."""
    return _DISOWNED.search(text, position) is not None


# ---------------------------------------------------------------------------------------------------------
# Names that are no place, and the hedges around real ones.

_PLACEHOLDER = re.compile(
    r"(?i)^(?:unknown|unidentified|undetermined|indeterminate|unclear|unspecified|uncertain|none|null|nil|"
    r"n/?a|na|tbd|\?+|-+|various|multiple|several|any|anytown|anywhere|somewhere|nowhere|generic|"
    r"not\s+\w+|no\s+\w+|unable\b.*|cannot\b.*|can't\b.*|impossible\b.*|hard\s+to\s+say|difficult\b.*)$"
    r"|(?i:\b(?:unknown|unidentified|undetermined|unnamed|generic|anytown|placeholder|unspecified)\b)"
)
_GENERIC_PLACE = re.compile(
    r"(?i)\b(?:city|town|village|suburb|area|region|countryside|location|place|settlement|neighbou?rhood|country)\b"
)
_HEDGE = re.compile(
    r"(?i)^(?:(?:most\s+|very\s+|quite\s+)?(?:likely|probably|possibly|perhaps|maybe|presumably|apparently|"
    r"approximately|approx\.?|roughly|around|about|near|nearby|close\s+to|outside|outskirts\s+of|"
    r"somewhere\s+in|somewhere|in|the\s+vicinity\s+of|vicinity\s+of|suburbs?\s+of|greater|central|"
    r"downtown|possibly\s+in|likely\s+in|probably\s+in)\b[\s,:]*)+"
)
_ALTERNATIVES = re.compile(r"(?i)\s(?:or|and/or|vs\.?|versus)\s|/|\|")


def without_hedges(name: str) -> str:
    """A name without the hedges models put before it ("Likely USA" -> "USA", "Near Abuja" -> "Abuja")."""
    return _HEDGE.sub("", name.strip()).strip()


def is_placeholder(name: str) -> bool:
    """Whether a name value is a placeholder ("Unknown", "N/A", "Unable to determine", "Unknown UK Town")."""
    return not name or _PLACEHOLDER.search(name) is not None


def is_generic(name: str) -> bool:
    """Whether a name is made of generic words ("European City", "Suburban City") rather than a name;
    the caller checks it is no real place first ("Mexico City", "Kansas City")."""
    return _GENERIC_PLACE.search(name) is not None


def is_alternatives(name: str) -> bool:
    """Whether a name value offers several ("United States or Canada", "Mexico/Panama")."""
    return _ALTERNATIVES.search(name) is not None


# ---------------------------------------------------------------------------------------------------------
# Ranges ("30°N to 50°N", "40-50°N", "between 30° and 60° N"): no point, so blanked before coordinates
# are read.

_NUMBER = r"[-+]?\d{1,3}(?:\.\d+)?\s*°?"
_LETTER = r"(?:\s*(?P<{name}>[NSEW])(?![A-Za-z]))?"
_RANGE = re.compile(
    rf"(?P<between>\bbetween\s+)?{_NUMBER}{_LETTER.format(name='first')}"
    rf"\s*(?(between)and|(?:to|through|-))\s*{_NUMBER}{_LETTER.format(name='second')}"
)
_AXIS_OF = {"N": "lat", "S": "lat", "E": "lon", "W": "lon"}


def blank_ranges(text: str) -> str:
    """`text` with every latitude or longitude range replaced by spaces (offsets kept)."""

    def blank(match: re.Match[str]) -> str:
        first, second = match["first"], match["second"]
        if second is None and match["between"] is None:
            return match.group(0)  # "43.4 - 11.8" or "12 to 15": no hemisphere, no range of coordinates
        if first is not None and second is not None and _AXIS_OF[first] != _AXIS_OF[second]:
            return match.group(0)  # "43.4 N - 11.8 E" is a pair
        return " " * len(match.group(0))

    return _RANGE.sub(blank, text)
