"""`gaea eval compare DIR1 DIR2 ...`: runs side by side (base against fine-tuned, with and without retrieval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.data import BENCH_TYPES
from eval.geo_eval import THRESHOLDS_KM
from eval.report import RESULTS_FILE
from eval.scoring import headline_scores
from gaea.errors import BadInputError


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """The results.json of a run directory.

    Raises
    ------
    BadInputError
        When the directory has no results.json or it is not a results file of ours.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise BadInputError(f"{run_dir}: no {RESULTS_FILE} (is it the --out directory of `gaea eval`?)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(results, dict) or results.get("task") not in ("gaea-bench", "geo"):
        raise BadInputError(f"{path}: not a results file of `gaea eval bench` or `gaea eval geo`")
    return results


def compare_table(run_dirs: list[str | Path]) -> str:
    """A Markdown table with one column per run; bench and geo runs get their own tables."""
    runs = [(str(run_dir), load_results(run_dir)) for run_dir in run_dirs]
    tables = []
    bench = [(name, results) for name, results in runs if results["task"] == "gaea-bench"]
    geo = [(name, results) for name, results in runs if results["task"] == "geo"]
    if bench:
        tables.append(_table(bench, _bench_rows()))
    if geo:
        tables.append(_table(geo, _geo_rows()))
    return "\n\n".join(tables) + "\n"


def _bench_rows() -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("model", lambda r: r["model"]), ("judge", _judge_label),
                                   ("scoring", lambda r: r.get("scoring", "strict"))]
    rows += [(name, _score_getter(name)) for name in (*BENCH_TYPES, "overall")]
    rows += [("unscored items", lambda r: str(sum(r["errors"].values())))]
    return rows


def _geo_rows() -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("model", lambda r: r["model"])]
    rows += [("ranker", lambda r: (r.get("ranking") or {}).get("ranker", "-")),
             ("candidates", lambda r: ",".join((r.get("ranking") or {}).get("candidates", [])) or "-")]
    rows += [(f"acc @ {km} km (%)", _accuracy_getter(f"{km}km")) for km in THRESHOLDS_KM]
    rows += [
        ("median km", lambda r: _fmt(r["median_km"])),
        ("GeoScore", lambda r: _fmt(r["geoscore"], 0)),
        ("city %", lambda r: _fmt(r["city_accuracy"])),
        ("country %", lambda r: _fmt(r["country_accuracy"])),
        ("city % (LLM judge)", lambda r: _fmt(_name_judge(r).get("city_accuracy"))),
        ("country % (LLM judge)", lambda r: _fmt(_name_judge(r).get("country_accuracy"))),
        ("rows", lambda r: str(r["counts"]["truth_rows"])),
    ]
    return rows


def _name_judge(results: dict[str, Any]) -> dict[str, Any]:
    """The LLM judge's summary of a geo run's names; a run without one has only the judge's name, "none"."""
    judge = results.get("judge")
    return judge if isinstance(judge, dict) else {}


def _judge_label(results: dict[str, Any]) -> str:
    return "judge-free" if results["judge_free"] else results["judge"]


def _score_getter(name: str) -> Any:
    return lambda results: _fmt(headline_scores(results).get(name))


def _accuracy_getter(key: str) -> Any:
    return lambda results: _fmt(results["accuracy"].get(key))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(runs: list[tuple[str, dict[str, Any]]], rows: list[tuple[str, Any]]) -> str:
    lines = ["| | " + " | ".join(name for name, _ in runs) + " |", "|---|" + "---:|" * len(runs)]
    for label, getter in rows:
        lines.append(f"| {label} | " + " | ".join(getter(results) for _, results in runs) + " |")
    return "\n".join(lines)
