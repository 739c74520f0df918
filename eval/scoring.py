"""GAEA-Bench score arithmetic, in two modes that every results.json carries side by side.

``strict`` (`aggregate`): per question type the mean 0-10 item score times 10 (a 0-100 score); overall the
unweighted mean of the MCQ, TF, SVQA and LVQA scores. Items without a score (judge error, model error) are
left out of the means and counted apart, so an unreadable judge reply never turns into a silent 0 or 10;
`scores_errors_as_zero` shows the pessimistic reading next to it.

``gaea`` (`gaea_scores`): GAEA's published arithmetic (calculate_scores.py): per item an integer 0-10 (SVQA's
two criteria cut to integers, averaged, cut again: 7.5 counts 7), unreadable judge replies left out, per
type the mean times 10 rounded to two decimals, overall the mean of the four rounded type scores, rounded.
Where GAEA's script would print 0 for a type without any scored item, this gives None: no number is made up.
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


def gaea_scores(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """GAEA's arithmetic on the samples' integer `gaea_score`s: ``scores`` per type and overall (None when a
    type has no scored item, and overall unless all four have a score) and ``scored`` items per type."""
    items: dict[str, list[int]] = {name: [] for name in BENCH_TYPES}
    for sample in samples:
        if sample["question_type"] in items and sample.get("gaea_score") is not None:
            items[sample["question_type"]].append(int(sample["gaea_score"]))
    scores: dict[str, float | None] = {
        name: round(sum(values) / len(values) * 10, 2) if values else None for name, values in items.items()
    }
    present = [scores[name] for name in BENCH_TYPES if scores[name] is not None]
    scores["overall"] = round(sum(present) / len(BENCH_TYPES), 2) if len(present) == len(BENCH_TYPES) else None
    return {"scores": scores, "scored": {name: len(values) for name, values in items.items()}}


def headline_scores(results: dict[str, Any]) -> dict[str, float | None]:
    """The scores a run reports first: GAEA's arithmetic for a `--scoring gaea` run, else the strict ones."""
    return results["gaea"]["scores"] if results.get("scoring") == "gaea" else results["scores"]


def _scores_of(item_scores: dict[str, list[float]]) -> dict[str, float | None]:
    scores: dict[str, float | None] = {name: type_score(values) for name, values in item_scores.items()}
    scores["overall"] = overall_score(scores)
    return scores


def _error_kind(error: str | None) -> str:
    """"judge parse: ..." -> "judge parse"; the part before the colon names the kind."""
    if not error:
        return "unknown"
    return error.split(":", 1)[0].strip()
