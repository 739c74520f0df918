"""The LLM judge of GAEA-Bench, through any OpenAI-compatible endpoint (GPT-4o, or a model served by vLLM).

Scores, as GAEA defines them: MCQ and TF 10 when the answer matches the reference, else 0; SVQA the
mean of two 0-10 criteria (location prediction; specificity and relevance); LVQA one 0-10 score.

Two scorings (`SCORINGS`), each with its judge instructions and its way of reading replies:

- ``strict`` (ours): a JSON object with the expected keys, else a reply made of nothing but the expected
  numbers. An unreadable reply is asked again; when every attempt fails the item is recorded as a judge
  error and counted, never given a score.
- ``gaea``: GAEA's own instructions, asked once, and the reply read as GAEA's scoring script reads it:
  the whole reply an integer (Python's ``int``), for SVQA a dict read by json-repair whose values are each
  cut to an integer; a reply it cannot read is left out.

Every verdict carries both the 0-10 `score` (SVQA: the mean of its criteria) and `gaea_score`, the integer
GAEA's arithmetic makes of the same criteria (SVQA: the criteria cut to integers, averaged, cut again).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from eval.judge_prompts import JUDGE_KEYS, JUDGE_SYSTEM, gaea_judge_prompt, judge_prompt, judge_retry_prompt
from gaea.errors import BackendError
from gaea.jsontext import last_object_with
from gaea.models.backends import Backend
from gaea.records import QARecord
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)

SCORINGS = ("strict", "gaea")
#: Judge calls per item: the first ask plus re-asks after unreadable replies (GAEA asks once).
DEFAULT_ATTEMPTS = {"strict": 3, "gaea": 1}
#: The judge GAEA's published scores were made with.
GAEA_JUDGE_MODEL = "gpt-4o-mini"
_NUMBER = r"\d+(?:\.\d+)?"
#: Words a numbers-only reply may carry around its numbers ("Score: 7/10", "location 8, specificity 6").
_LABEL_WORDS = {
    "score", "scores", "location", "prediction", "location_prediction", "specificity", "relevance",
    "specificity_relevance", "and", "match", "rating", "final", "overall", "criterion", "criteria",
}


class JudgeParseError(ValueError):
    """A judge reply that is neither the expected JSON object nor the expected bare numbers."""


@dataclass
class Verdict:
    """The judge's decision on one answer: `score` 0-10 and `gaea_score` (GAEA's integer of the same
    criteria), or both None with `error` saying why."""

    score: float | None
    criteria: dict[str, Any] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)
    error: str | None = None
    gaea_score: int | None = None


def parse_judge_reply(text: str, question_type: str) -> dict[str, float]:
    """The criteria of a judge reply for `question_type`, each 0-10 (MCQ / TF: ``{"match": 10 or 0}``).

    Raises
    ------
    JudgeParseError
        When the reply carries neither a JSON object with the expected keys and valid values, nor
        only the expected count of numbers.
    """
    keys = JUDGE_KEYS[question_type]
    obj = last_object_with(text, keys, strict=True)
    if obj is not None:
        return {key: _criterion(obj[key], key=key, question_type=question_type) for key in keys}
    numbers = _bare_numbers(text)
    if numbers is None:
        raise JudgeParseError(f"no JSON object with {', '.join(keys)} and not a bare score: {_snippet(text)!r}")
    if len(numbers) != len(keys):
        raise JudgeParseError(f"expected {len(keys)} number(s), found {len(numbers)}: {_snippet(text)!r}")
    pairs = zip(keys, numbers, strict=True)
    return {key: _criterion(value, key=key, question_type=question_type) for key, value in pairs}


def score_of(criteria: dict[str, float]) -> float:
    """One 0-10 score from the criteria: their mean (SVQA has two, the others one; none counts 0, as in
    GAEA's arithmetic)."""
    return sum(criteria.values()) / len(criteria) if criteria else 0.0


def gaea_score_of(criteria: dict[str, float], question_type: str) -> int:
    """GAEA's integer item score from the criteria, as GAEA's calculate_scores.py computes it: for SVQA each
    criterion cut to an integer, their sum halved (whatever their number), the result cut (8 and 7 -> 7.5 ->
    7); otherwise the one score cut to an integer."""
    values = [int(value) for value in criteria.values()]
    return int(sum(values) / 2) if question_type == "SVQA" else values[0]


def read_gaea_reply(text: str, question_type: str) -> dict[str, float]:
    """The criteria of a reply to GAEA's judge instructions, read as GAEA's scoring script reads it.

    SVQA: json-repair's reading of the reply, which must be a mapping (of two criteria, as asked; GAEA's
    script halves the sum of however many it finds, and so does `gaea_score_of`) whose values Python's ``int``
    accepts ("9.5" as text is refused, 9.5 as a number is cut to 9 by the arithmetic). Other types: the
    whole reply one integer as Python's ``int`` reads text (space around it allowed, "7.5" or "Score: 7"
    refused).

    Raises
    ------
    JudgeParseError
        For a reply GAEA's script would leave out.
    """
    if question_type == "SVQA":
        import json_repair

        # The whole reply through json-repair, as GAEA's script reads it (not gaea.jsontext's search for
        # objects in prose): what it reads and what it leaves out must be GAEA's.
        obj = json_repair.loads(text)
        if not isinstance(obj, dict):
            raise JudgeParseError(f"not a mapping of the criteria: {_snippet(text)!r}")
        try:
            [int(value) for value in obj.values()]
        except (TypeError, ValueError, OverflowError) as error:
            raise JudgeParseError(f"a criterion is not a number GAEA reads: {_snippet(text)!r}") from error
        return {str(key): float(value) for key, value in obj.items()}
    try:
        return {"score": float(int(text))}
    except ValueError as error:
        raise JudgeParseError(f"not a bare integer: {_snippet(text)!r}") from error


def _snippet(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _bare_numbers(text: str) -> list[float] | None:
    """The numbers of a reply made only of numbers (optionally "/10") and label words, else None."""
    if not re.search(r"\d", text):
        return None
    lowered = text.lower()
    numbers = [float(value) for value in re.findall(rf"({_NUMBER})(?:\s*/\s*10(?!\d))?", lowered)]
    rest = re.sub(rf"{_NUMBER}(?:\s*/\s*10(?!\d))?", " ", lowered)
    words = re.findall(r"[a-z_]+", rest)
    leftover = re.sub(r"[a-z_]+|[\s:=,;.*\-\"'(){}\[\]]", "", rest)
    if leftover or any(word not in _LABEL_WORDS for word in words):
        return None
    return numbers


def _criterion(value: Any, *, key: str, question_type: str) -> float:
    if key == "match":
        return 10.0 if _match_value(value) else 0.0
    number = _number_value(value, key=key)
    if not 0.0 <= number <= 10.0:
        raise JudgeParseError(f"{key} = {number:g} is outside 0-10")
    return number


def _match_value(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    if isinstance(value, (int, float)) and value in (0, 10):
        return value == 10
    raise JudgeParseError(f"match = {value!r} is not true / false")


def _number_value(value: Any, *, key: str) -> float:
    if isinstance(value, bool):
        raise JudgeParseError(f"{key} = {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise JudgeParseError(f"{key} = {value!r} is not a number") from error
    if not math.isfinite(number):
        raise JudgeParseError(f"{key} = {value!r} is not a finite number")
    return number


class LLMJudge:
    """Scores answers by asking a judge model.

    Parameters
    ----------
    backend
        The judge model, e.g. ``load_backend("openai", base_url=..., model="gpt-4o")``.
    scoring
        ``strict`` (our instructions and reading) or ``gaea`` (GAEA's), see the module docstring.
    attempts
        Judge calls per answer before an unreadable reply becomes a judge error (default 3; GAEA's scoring
        asks once).
    params
        Sampling settings of the judge (greedy by default, so scores are reproducible).
    """

    def __init__(self, backend: Backend, *, scoring: str = "strict", attempts: int | None = None,
                 params: GenerationParams | None = None):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, not {scoring!r}")
        attempts = DEFAULT_ATTEMPTS[scoring] if attempts is None else attempts
        if attempts < 1 or (scoring == "gaea" and attempts != 1):
            raise ValueError(f"attempts must be at least 1 (exactly 1 for GAEA's scoring, which asks once), "
                             f"not {attempts}")
        self.backend = backend
        self.scoring = scoring
        self.attempts = attempts
        self.params = params or GenerationParams(max_new_tokens=256, temperature=0.0)

    @property
    def name(self) -> str:
        return f"llm:{self.backend.name}"

    def judge(self, record: QARecord, candidate: str) -> Verdict:
        """The verdict on `candidate` as an answer to `record`; judge server failures become errors too."""
        if self.scoring == "gaea":
            messages = [Message.system(gaea_judge_prompt(record, candidate))]
            read = read_gaea_reply
        else:
            messages = [Message.system(JUDGE_SYSTEM), Message.user(judge_prompt(record, candidate))]
            read = parse_judge_reply
        replies: list[str] = []
        problem = ""
        for _ in range(self.attempts):
            try:
                reply = self.backend.generate(messages, params=self.params)
            except BackendError as error:
                return Verdict(None, replies=replies, error=f"judge backend: {error}")
            replies.append(reply)
            try:
                criteria = read(reply, record.question_type)
            except JudgeParseError as error:
                problem = str(error)
                messages += [Message.assistant(reply), Message.user(judge_retry_prompt(record.question_type, problem))]
                continue
            gaea_score = gaea_score_of(criteria, record.question_type)
            return Verdict(score_of(criteria), criteria=criteria, replies=replies, gaea_score=gaea_score)
        log.info("judge reply for %s unreadable after %d attempts: %s", record.id, self.attempts, problem)
        return Verdict(None, replies=replies, error=f"judge parse: {problem}")
