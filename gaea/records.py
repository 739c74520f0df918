"""The QA record and the one renderer of its prompt and target.

One schema is shared by data_pipeline (writes it), finetune (trains on it) and eval (scores it): the released
GAEA-Bench fields, plus `id`, `source` and `evidence`. One function, `render`, turns a record into the user
turn a model is asked and the reply it is taught, so that `gaea data export`, `gaea finetune` and
`gaea eval bench` show a model exactly the same text: a model is evaluated on the prompts it was trained on.

Records read from elsewhere (`QARecord.from_dict`) are brought to one form: multiple-choice options written
inside the question (as GAEA-Bench publishes them: "... Choose one option:\\nA. BBVA has an ATM  B. No banks
...") become `options`, an MCQ answer is the text of its option ("C. Kutxabank has an ATM" -> "Kutxabank has
an ATM"), a true / false answer is "True" or "False" (also when written "yes" / "no").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from gaea.errors import BadInputError

QUESTION_TYPES = ("MCQ", "TF", "SVQA", "LVQA", "LOC")
#: The one option alphabet: options are lettered A, B, C, ... in every prompt and target.
OPTION_LETTERS = "ABCDEFGH"
#: What the model is told after each question type's question (and options).
INSTRUCTIONS = {
    "MCQ": "Answer with the letter and the text of the correct option.",
    "TF": "Answer True or False.",
    "SVQA": "Answer with a word or a short phrase.",
    "LVQA": "Answer in a few sentences.",
    "LOC": "Answer with the place, then its coordinates as (latitude, longitude).",
}
TRUE, FALSE = "True", "False"
_TRUTH_WORDS = {"true": TRUE, "yes": TRUE, "false": FALSE, "no": FALSE}


@dataclass(slots=True)
class QARecord:
    """One question about one photo.

    `image` is a path relative to the dataset directory; `options` is set for MCQ only, and an MCQ `answer`
    is one of them (or its letter); `evidence` lists the OSM elements (osm_type, osm_id, name, tags, lat,
    lon, distance_m) and context facts (kind, value) the answer was built from.
    """

    id: str
    image: str
    question: str
    answer: str
    question_type: str
    lat: float | None = None
    lon: float | None = None
    location: str = ""
    options: list[str] | None = None
    source: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that deep-copies the evidence of every record written.
        return {"id": self.id, "image": self.image, "question": self.question, "answer": self.answer,
                "question_type": self.question_type, "lat": self.lat, "lon": self.lon, "location": self.location,
                "options": self.options, "source": self.source, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QARecord:
        """A record from a row of any QA dataset (ours, GAEA-Bench's published layout, a saved copy).

        Without an `id`, the id is a hash of the row's content (type, question, answer, image file name), the
        same on every machine. GAEA-Bench's `subset` column is read as `source`.

        Raises
        ------
        BadInputError
            When a field is missing, the type is unknown, an MCQ answer is none of its options, or a TF answer
            is neither true nor false.
        """
        missing = [key for key in ("question", "answer", "question_type") if data.get(key) is None]
        if missing:
            raise BadInputError(f"QA record {data.get('id', '?')!r} lacks {', '.join(missing)}")
        qtype = str(data["question_type"]).strip().upper()
        image = data.get("image") or ""
        image = str(image.get("path") or "") if isinstance(image, dict) else str(image)
        question, answer = str(data["question"]), str(data["answer"]).strip()
        record_id = str(data.get("id") or content_id(qtype, question, answer, image))
        if qtype not in QUESTION_TYPES:
            raise BadInputError(f"QA record {record_id!r}: unknown question_type {data['question_type']!r}")
        options = [str(option) for option in data["options"]] if data.get("options") else None
        if qtype == "MCQ" and options is None:
            question, options = split_options(question)
        return cls(
            id=record_id,
            image=image,
            question=question,
            answer=_canonical_answer(record_id, qtype, answer, options),
            question_type=qtype,
            lat=_float_or_none(data.get("lat")),
            lon=_float_or_none(data.get("lon")),
            location=str(data.get("location") or ""),
            options=options,
            source=str(data.get("source") or data.get("subset") or ""),
            evidence=_evidence(data.get("evidence")),
        )


# ---------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendered:
    """What a model sees of a record (`prompt`, the text of the user turn, beside the photo) and what it
    should answer (`target`)."""

    prompt: str
    target: str


def render(record: QARecord) -> Rendered:
    """The user turn and the target of `record`: the question, its options lettered A, B, C, ... one per
    line, the instruction of its type; the target an MCQ's "B. <option>", a TF's "True" / "False", else the
    answer.

    Raises
    ------
    BadInputError
        When an MCQ answer is none of its options or a TF answer is neither true nor false.
    """
    return Rendered(f"{question_text(record)}\n{INSTRUCTIONS[record.question_type]}", target_text(record))


def question_text(record: QARecord) -> str:
    """The question with its lettered options and no instruction (what a judge is shown)."""
    if not record.options:
        return record.question
    lines = [f"{OPTION_LETTERS[index]}. {option}" for index, option in enumerate(record.options)]
    return "\n".join([record.question, *lines])


def target_text(record: QARecord) -> str:
    """The reply a model is taught for `record` and judged against."""
    answer = _canonical_answer(record.id, record.question_type, record.answer, record.options)
    if record.question_type == "MCQ" and record.options:
        return f"{OPTION_LETTERS[record.options.index(answer)]}. {answer}"
    return answer


def option_index(answer: str, options: list[str]) -> int | None:
    """Which option `answer` names: by its letter ("C", "(c)", "C. Kutxabank has an ATM") or by its text
    (case and surrounding space ignored); None when it names none."""
    text = answer.strip()
    lettered = re.fullmatch(r"\(?([A-Ha-h])\)?(?:\s*[.):]\s*(.*))?", text, flags=re.DOTALL)
    if lettered:
        index = OPTION_LETTERS.index(lettered.group(1).upper())
        rest = (lettered.group(2) or "").strip().casefold()
        if index < len(options) and (not rest or rest == options[index].strip().casefold()):
            return index
    folded = [option.strip().casefold() for option in options]
    return folded.index(text.casefold()) if text.casefold() in folded else None


def truth_value(answer: str) -> str | None:
    """"True" or "False" for an answer whose first word is true / yes or false / no; else None."""
    words = re.findall(r"[a-z]+", answer.lower())
    return _TRUTH_WORDS.get(words[0]) if words else None


# The option markers of a question that lists its options inline: "A." / "A)" / "(A)" at the start of the
# text or after white space, followed by white space. Hand-written: no library reads MCQ text.
_MARKER = r"(?:(?<=\s)|^)\(?{letter}[.)]\s+"


def split_options(question: str) -> tuple[str, list[str] | None]:
    """(stem, options) of a question whose options are written inside it, as GAEA-Bench does:
    ``"... Choose one option:\\nA. BBVA has an ATM  B. No banks ...\\nC. ...  D. ..."``; (question, None)
    when it lists no options A, B, ... in order (at least two)."""
    starts = list(re.finditer(_MARKER.format(letter="A"), question))
    for first in reversed(starts):  # the last "A." that opens a full run: an earlier one is part of the stem
        bounds = [(first.start(), first.end())]
        for letter in OPTION_LETTERS[1:]:
            following = re.compile(_MARKER.format(letter=letter)).search(question, bounds[-1][1])
            if following is None:
                break
            bounds.append((following.start(), following.end()))
        if len(bounds) < 2:
            continue
        ends = [start for start, _ in bounds[1:]] + [len(question)]
        options = [question[end:stop].strip() for (_, end), stop in zip(bounds, ends, strict=True)]
        if all(options):
            return question[: first.start()].rstrip(), options
    return question, None


def _canonical_answer(record_id: str, qtype: str, answer: str, options: list[str] | None) -> str:
    if qtype == "MCQ" and options:
        index = option_index(answer, options)
        if index is None:
            raise BadInputError(f"QA record {record_id!r}: the answer {answer!r} is none of the options {options}")
        return options[index]
    if qtype == "TF":
        truth = truth_value(answer)
        if truth is None:
            raise BadInputError(f"QA record {record_id!r}: a true / false answer {answer!r} is neither")
        return truth
    return answer


# ---------------------------------------------------------------------------------------------- ids and files


def stable_id(image: str, question: str) -> str:
    """An id that is the same on every machine for the same image and question."""
    return hashlib.sha1(f"{image}\x00{question}".encode()).hexdigest()[:16]


def content_id(question_type: str, question: str, answer: str, image: str) -> str:
    """The id of a row that has none: a hash of what it asks about which photo (by file name, never the
    folder it lies in, so every machine gives the same id)."""
    return stable_id(PurePath(image.replace("\\", "/")).name, "\x00".join((question_type, question, answer)))


def _evidence(value: Any) -> list[dict[str, Any]]:
    # Datasets store evidence as one JSON string (its items have different keys).
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    return list(value) if isinstance(value, list) else []


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
