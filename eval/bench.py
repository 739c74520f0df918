"""The GAEA-Bench QA task: ask the model each question about its photo, score the answer, aggregate.

`process_results(item, output, scorer)` is the lmms-eval-style per-item function: it turns one model
answer into one sample (id, type, question, reference, answer, 0-10 score and GAEA's integer score or an
error, judge replies), the payload that `eval.scoring.aggregate` reduces to the reported scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from eval.data import BenchItem
from eval.judge import Verdict
from gaea.errors import BackendError, BackendUnreachableError, BadInputError
from gaea.records import QARecord, render, target_text


class Scorer(Protocol):
    """An LLM judge or the judge-free scorer."""

    name: str

    def judge(self, record: QARecord, candidate: str) -> Verdict: ...


class Answerer(Protocol):
    """What is evaluated: `gaea.assistant.Assistant` (the product's entry point: system prompt, optional
    retrieval and map context) or anything else answering one question about one photo."""

    def ask(self, image: Any, question: str) -> str: ...


def process_results(item: BenchItem, output: str, scorer: Scorer) -> dict[str, Any]:
    """One sample: the item, the model's answer, and the scorer's verdict on it."""
    verdict = scorer.judge(item.record, output)
    return _sample(item, prediction=output, verdict=verdict, judge=scorer.name)


def make_worker(answerer: Answerer, scorer: Scorer) -> Callable[[BenchItem], dict[str, Any]]:
    """The runner's per-item work: ask the question about the item's photo (`answer_of`), then score the
    answer (`sample_of`)."""

    def work(item: BenchItem) -> dict[str, Any]:
        return sample_of(item, answer_of(answerer, item), scorer)

    return work


def answer_of(answerer: Answerer, item: BenchItem) -> tuple[str, str | None]:
    """The model's answer to the item, ``(answer, None)``, or ``("", why it has none)``.

    The model is asked the prompt of `gaea.records.render`, the user turn it was trained on. A model or
    image failure on one item is that item's error; an unreachable model server stops the run, since every
    further item would fail the same way.
    """
    try:
        return answerer.ask(item.image(), render(item.record).prompt), None
    except BackendUnreachableError:
        raise
    except BackendError as error:
        return "", f"model: {error}"
    except BadInputError as error:
        return "", f"image: {error}"


def sample_of(item: BenchItem, answer: tuple[str, str | None], scorer: Scorer) -> dict[str, Any]:
    """The sample of an answer of `answer_of`: scored, or its error recorded."""
    output, error = answer
    if error is not None:
        return _sample(item, prediction="", verdict=Verdict(None, error=error), judge=scorer.name)
    return process_results(item, output, scorer)


def _sample(item: BenchItem, *, prediction: str, verdict: Verdict, judge: str) -> dict[str, Any]:
    record = item.record
    return {
        "id": record.id,
        "question_type": record.question_type,
        "image": record.image,
        "question": record.question,
        "options": record.options,
        "reference": target_text(record),
        "prediction": prediction,
        "score": verdict.score,
        "gaea_score": verdict.gaea_score,
        "criteria": verdict.criteria,
        "judge": judge,
        "judge_replies": verdict.replies,
        "error": verdict.error,
    }
