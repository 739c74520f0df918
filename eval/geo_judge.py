"""GAEA's LLM judge of city and country predictions, asked GAEA's own question.

GAEA (evaluations/city-country/batchFile_city_eval.py, batchFile_country_eval.py, cc_acc.py) asks
gpt-4o-mini, for each photo and each name, whether the prediction (the first comma part of the answer for
the city, the last for the country) "is within the ground truth", to be answered 1 or 0, and reports the
mean of the readable scores. Here the same system prompt and question go to any OpenAI-compatible judge.
The reply must be what was asked, a bare 0 or 1: anything else is a judge error, counted and left out of
the mean, as GAEA leaves out replies it cannot read. A row without a prediction scores 0 without a call
(a miss, as everywhere in `gaea eval geo`; GAEA's own inference always answers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaea.errors import BackendError
from gaea.models.backends import Backend
from gaea.types import GenerationParams, Message

GAEA_SYSTEM = "You are a helpful Assistant. Provide helpful response to the user's question."
NAMES = ("city", "country")
_SCORE = re.compile(r"(?i)\s*(?:\*\*)?(?:score\s*[:=]?\s*)?([01])(?:\.0)?(?:\*\*)?\s*\.?\s*")


def gaea_question(prediction: str, truth: str) -> str:
    """GAEA's judge question, word for word."""
    return (
        "Evaluate this considering the geographical context.:\n\n"
        "If the prediction is within the ground truth, it is correct.\n"
        "If it is a match give a score of 1, otherwise, give a score of 0.\n"
        f"Prediction: {prediction}\n"
        f"Ground Truth: {truth}\n"
        "Just return the score without any additional commentary."
    )


def parse_score(reply: str) -> int | None:
    """The 0 or 1 of a reply that is nothing but the score ("1", "0.", "Score: 1"), else None."""
    match = _SCORE.fullmatch(reply or "")
    return int(match[1]) if match else None


@dataclass(frozen=True)
class NameItem:
    """What the judge compares for one ground-truth row: the answer's city and country parts and the truth's."""

    id: str
    predicted: dict[str, str]
    truth: dict[str, str]


def name_items(samples: list[dict[str, Any]]) -> list[NameItem]:
    """One judge item per `evaluate` sample."""
    return [
        NameItem(
            sample["id"],
            {name: sample["guess"][name] for name in NAMES},
            {name: sample["truth"][name] for name in NAMES},
        )
        for sample in samples
    ]


def judge_worker(backend: Backend, *, max_tokens: int = 256) -> Callable[[NameItem], dict[str, Any]]:
    """The runner's per-row work: ask the judge about the city and the country the truth names."""
    params = GenerationParams(max_new_tokens=max_tokens, temperature=0.0)

    def ask(prediction: str, truth: str) -> dict[str, Any]:
        messages = [Message.system(GAEA_SYSTEM), Message.user(gaea_question(prediction, truth))]
        reply = backend.generate(messages, params=params)
        score = parse_score(reply)
        return {"score": score, "reply": reply, "error": None if score is not None else "judge parse: not 0 or 1"}

    def work(item: NameItem) -> dict[str, Any]:
        sample: dict[str, Any] = {"id": item.id}
        try:
            for name in NAMES:
                if not item.truth[name]:
                    continue
                if not item.predicted[name]:
                    sample[name] = {"score": 0, "reply": None, "error": None}
                    continue
                sample[name] = ask(item.predicted[name], item.truth[name])
        except BackendError as error:
            return {"id": item.id, "error": f"judge backend: {error}"}
        return sample

    return work


def judge_summary(samples: list[dict[str, Any]], *, judge: str) -> dict[str, Any]:
    """City and country accuracy by the judge (percent of readable scores), with the counts behind them."""
    summary: dict[str, Any] = {"model": judge, "question": "GAEA's: is the prediction within the ground truth? (1 / 0)"}
    counts: dict[str, int] = {"judge_errors": sum(1 for sample in samples if sample.get("error"))}
    for name in NAMES:
        verdicts = [sample[name] for sample in samples if name in sample]
        scores = [verdict["score"] for verdict in verdicts if verdict["score"] is not None]
        summary[f"{name}_accuracy"] = 100.0 * float(np.mean(scores)) if scores else None
        counts[f"{name}_scored"] = len(scores)
        counts[f"{name}_unreadable"] = len(verdicts) - len(scores)
        counts[f"{name}_without_prediction"] = sum(1 for verdict in verdicts if verdict["reply"] is None)
    return summary | {"counts": counts}
