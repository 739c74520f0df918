"""GAEA-Bench score arithmetic: per question type the mean 0-10 item score times 10 (a 0-100 score); overall
the unweighted mean of the MCQ, TF, SVQA and LVQA scores.

Items without a score (judge error, model error) are left out of the means and counted apart, so an
unreadable judge reply never turns into a silent 0 or 10; `scores_errors_as_zero` shows the pessimistic
reading next to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eval.data import BENCH_TYPES


def type_score(item_scores: list[float]) -> float | None:
    """The 0-100 score of one question type: mean of its 0-10 item scores times 10; None without items."""
    if not item_scores:
        return None
    return 10.0 * sum(item_scores) / len(item_scores)


def overall_score(scores: dict[str, float | None]) -> float | None:
    """The unweighted mean of the type scores that exist (all four in a full run)."""
    present = [scores[name] for name in BENCH_TYPES if scores.get(name) is not None]
    return sum(present) / len(present) if present else None


def aggregate(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Scores, counts and errors of a run from its samples (one dict per item, see `eval.bench`).

    Returns
    -------
    dict
        ``scores`` ({MCQ, TF, SVQA, LVQA, overall}: 0-100 or None), ``scores_errors_as_zero`` (the same
        with every unscored item counted 0), ``counts`` (per type: items, scored, errors) and ``errors``
        (per kind: judge, model, reference).
    """
    scored: dict[str, list[float]] = {name: [] for name in BENCH_TYPES}
    with_zeros: dict[str, list[float]] = {name: [] for name in BENCH_TYPES}
    counts = {name: {"items": 0, "scored": 0, "errors": 0} for name in BENCH_TYPES}
    errors: dict[str, int] = {}
    for sample in samples:
        qtype = sample["question_type"]
        if qtype not in counts:
            continue
        counts[qtype]["items"] += 1
        if sample.get("score") is None:
            counts[qtype]["errors"] += 1
            kind = _error_kind(sample.get("error"))
            errors[kind] = errors.get(kind, 0) + 1
            with_zeros[qtype].append(0.0)
            continue
        counts[qtype]["scored"] += 1
        scored[qtype].append(float(sample["score"]))
        with_zeros[qtype].append(float(sample["score"]))
    return {
        "scores": _scores_of(scored),
        "scores_errors_as_zero": _scores_of(with_zeros),
        "counts": counts,
        "errors": errors,
    }


def _scores_of(item_scores: dict[str, list[float]]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {name: type_score(values) for name, values in item_scores.items()}
    scores["overall"] = overall_score(scores)
    return scores


def _error_kind(error: str | None) -> str:
    """"judge parse: ..." -> "judge parse"; the part before the colon names the kind."""
    if not error:
        return "unknown"
    return error.split(":", 1)[0].strip()
