"""sanitize_text: OSM text is untrusted and reaches prompts, logs and web pages."""

from __future__ import annotations

import unicodedata

import pytest

from gaea.errors import BadInputError
from gaea.osm import sanitize_text


def test_control_characters_are_removed_and_whitespace_collapsed() -> None:
    assert sanitize_text("Caff\u00e8\x00 del\x07\x1b[31m Corso") == "Caffè del[31m Corso"
    assert sanitize_text("  Piazza\n\tGrande\r\n ") == "Piazza Grande"
    assert sanitize_text("a\u2028b\u3000c") == "a b c"


def test_bidirectional_overrides_and_invisible_characters_are_removed() -> None:
    spoofed = "Museo\u202e gpj.exe\u202c\u200b\u2066x\u2069\ufeff"
    cleaned = sanitize_text(spoofed)
    assert cleaned == "Museo gpj.exex"
    assert not [char for char in cleaned if unicodedata.category(char).startswith("C")]


def test_long_values_are_cut_with_an_ellipsis() -> None:
    cleaned = sanitize_text("Basilica di San Francesco " * 20, max_len=40)
    assert len(cleaned) == 40
    assert cleaned.endswith("\u2026")
    assert cleaned.startswith("Basilica di San Francesco")
    assert sanitize_text("x" * 120) == "x" * 120
    assert len(sanitize_text("x" * 121)) == 120


def test_scripts_and_accents_survive() -> None:
    for text in ["Αρέτσο", "アレッツォ", "أريتسو", "Kotka – Karhula", "Bäckerei Müller"]:
        assert sanitize_text(text) == unicodedata.normalize("NFC", text)
    # Decomposed accents are composed, so equal names compare equal.
    assert sanitize_text("Cafe\u0301") == "Café"


def test_non_strings_and_none() -> None:
    assert sanitize_text(None) == ""
    assert sanitize_text(42) == "42"
    assert sanitize_text("\x00\x01\u200b") == ""


def test_max_len_must_be_positive() -> None:
    with pytest.raises(BadInputError, match="max_len"):
        sanitize_text("x", max_len=0)
