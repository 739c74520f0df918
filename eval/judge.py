"""The LLM judge of GAEA-Bench, through any OpenAI-compatible endpoint (GPT-4o, or a model served by vLLM).

Scores, as GAEA defines them: MCQ and TF 10 when the answer matches the reference, else 0; SVQA the
mean of two 0-10 criteria (location prediction; specificity and relevance); LVQA one 0-10 score.
Replies are parsed strictly: a JSON object with the expected keys, else a reply made of nothing but the
expected numbers. An unreadable reply is asked again; when every attempt fails the item is recorded as a
judge error and counted, never given a score.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from eval.judge_prompts import JUDGE_KEYS, JUDGE_SYSTEM, judge_prompt, judge_retry_prompt
from gaea.errors import BackendError
from gaea.jsontext import last_object_with
from gaea.models.backends import Backend
from gaea.records import QARecord
from gaea.types import GenerationParams, Message

log = logging.getLogger(__name__)

#: Judge calls per item: the first ask plus re-asks after unreadable replies.
DEFAULT_ATTEMPTS = 3
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
    """The judge's decision on one answer: `score` 0-10, or None with `error` saying why."""

    score: float | None
    criteria: dict[str, Any] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)
    error: str | None = None


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
    """One 0-10 score from the criteria: their mean (SVQA has two, the others one)."""
    return sum(criteria.values()) / len(criteria)


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
    attempts
        Judge calls per answer before an unreadable reply becomes a judge error.
    params
        Sampling settings of the judge (greedy by default, so scores are reproducible).
    """

    def __init__(self, backend: Backend, *, attempts: int = DEFAULT_ATTEMPTS, params: GenerationParams | None = None):
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        self.backend = backend
        self.attempts = attempts
        self.params = params or GenerationParams(max_new_tokens=256, temperature=0.0)

    @property
    def name(self) -> str:
        return f"llm:{self.backend.name}"

    def judge(self, record: QARecord, candidate: str) -> Verdict:
        """The verdict on `candidate` as an answer to `record`; judge server failures become errors too."""
        messages = [Message.system(JUDGE_SYSTEM), Message.user(judge_prompt(record, candidate))]
        replies: list[str] = []
        problem = ""
        for _ in range(self.attempts):
            try:
                reply = self.backend.generate(messages, params=self.params)
            except BackendError as error:
                return Verdict(None, replies=replies, error=f"judge backend: {error}")
            replies.append(reply)
            try:
                criteria = parse_judge_reply(reply, record.question_type)
            except JudgeParseError as error:
                problem = str(error)
                messages += [Message.assistant(reply), Message.user(judge_retry_prompt(record.question_type, problem))]
                continue
            return Verdict(score_of(criteria), criteria=criteria, replies=replies)
        log.info("judge reply for %s unreadable after %d attempts: %s", record.id, self.attempts, problem)
        return Verdict(None, replies=replies, error=f"judge parse: {problem}")
