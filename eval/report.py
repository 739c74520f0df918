"""Run outputs: `results.json` (scores, counts, errors, configuration, model and package versions), a
Markdown table (`results.md`) and PNG plots (scores per type; cumulative distance-error curve)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.data import BENCH_TYPES
from eval.geo_eval import THRESHOLDS_KM
from eval.scoring import headline_scores
from gaea.io import atomic_write_bytes, atomic_write_json, atomic_write_text

RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
_PACKAGES = ("gaea-geolocation", "torch", "transformers", "peft", "datasets", "sentence-transformers", "httpx", "numpy")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages that shape a result (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_header(*, task: str, model: str, judge: str, config: dict[str, Any]) -> dict[str, Any]:
    """What every results.json starts with: task, model, judge (and whether judge-free), config, versions."""
    return {
        "task": task,
        "model": model,
        "judge": judge,
        "judge_free": not judge.startswith("llm:"),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "versions": package_versions(),
    }


def write_bench_report(out_dir: str | Path, results: dict[str, Any]) -> None:
    """results.json, results.md and scores.png of a GAEA-Bench run."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / RESULTS_FILE, results)
    atomic_write_text(out_dir / "results.md", bench_markdown(results))
    _write_png(out_dir / "scores.png", _scores_figure(results))


def write_geo_report(out_dir: str | Path, results: dict[str, Any], distances_km: Sequence[float | None]) -> None:
    """results.json, results.md and distance_cdf.png of a distance / city / country run."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / RESULTS_FILE, results)
    atomic_write_text(out_dir / "results.md", geo_markdown(results))
    _write_png(out_dir / "distance_cdf.png", _distance_figure(results, distances_km))


def _judge_line(results: dict[str, Any]) -> str:
    if results["task"] == "geo":
        judge = results.get("judge")
        if isinstance(judge, dict):
            name = judge["model"].removeprefix("llm:")
            return (f"Scoring: distances and names; city and country also judged by `{name}` "
                    "with GAEA's question (is the prediction within the ground truth? 1 / 0).")
        return "Scoring: distances and names (no judge)."
    if results["judge_free"]:
        return "Scoring: **judge-free** (option / yes-no matching; embedding similarity for SVQA / LVQA)."
    judge = results["judge"].removeprefix("llm:")
    if results.get("scoring") == "gaea":
        return f"Scoring: **GAEA's** judge instructions and arithmetic, judge `{judge}`."
    return f"Scoring: LLM judge `{judge}` (strict: unreadable replies asked again, then counted as errors)."


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def bench_markdown(results: dict[str, Any]) -> str:
    """A Markdown table of a GAEA-Bench run: per type the strict score and GAEA's arithmetic, items, scored
    and errors."""
    lines = [f"# GAEA-Bench: {results['model']}", "", _judge_line(results), ""]
    lines += ["| type | strict (0-100) | GAEA arithmetic (0-100) | items | scored | errors |",
              "|---|---:|---:|---:|---:|---:|"]
    gaea = results["gaea"]
    for name in BENCH_TYPES:
        count = results["counts"][name]
        strict, by_gaea = _number(results["scores"][name]), _number(gaea["scores"][name], 2)
        lines.append(f"| {name} | {strict} | {by_gaea} | {count['items']} | {count['scored']} | {count['errors']} |")
    overall = f"**{_number(results['scores']['overall'])}** | **{_number(gaea['scores']['overall'], 2)}**"
    lines.append(f"| **overall** | {overall} | | | |")
    if results["errors"]:
        lines += ["", "Unscored items by cause: " + ", ".join(f"{k} {v}" for k, v in sorted(results["errors"].items()))]
    lines += ["", "strict: the mean 0-10 item score x 10, unscored items left out and counted; GAEA arithmetic: "
              "integer item scores (SVQA's two criteria averaged, then cut), means x 10 rounded to 2 decimals."]
    return "\n".join(lines) + "\n"


def geo_markdown(results: dict[str, Any]) -> str:
    """A Markdown table of a distance / city / country run."""
    keys = [f"{km}km" for km in THRESHOLDS_KM]
    lines = [f"# Geolocation: {results['model']}", "", _judge_line(results), ""]
    lines += ["| " + " | ".join(["rows", *keys, "median km", "GeoScore", "city %", "country %"]) + " |"]
    lines += ["|" + "---:|" * (len(keys) + 5)]
    cells = [str(results["counts"]["truth_rows"]), *(_number(results["accuracy"][key]) for key in keys)]
    cells += [_number(results["median_km"]), _number(results["geoscore"], 0)]
    cells += [_number(results["city_accuracy"]), _number(results["country_accuracy"])]
    lines.append("| " + " | ".join(cells) + " |")
    counts = results["counts"]
    lines += ["", f"Accuracy is over all {counts['truth_rows']} ground-truth rows: {counts['missing']} without a "
              f"prediction and {counts['unusable']} with an unusable one count as misses."]
    if counts.get("with_coordinates") == 0:
        lines.append("The ground truth has no coordinates: it gives city and country accuracy only.")
    judge = results.get("judge")
    if isinstance(judge, dict):
        judged = judge["counts"]
        lines += ["", "| LLM judge (GAEA's question) | city % | country % |", "|---|---:|---:|",
                  f"| {judge['model'].removeprefix('llm:')} | {_number(judge['city_accuracy'])} | "
                  f"{_number(judge['country_accuracy'])} |", "",
                  f"Scored {judged['city_scored']} cities and {judged['country_scored']} countries; unreadable "
                  f"replies left out: {judged['city_unreadable']} / {judged['country_unreadable']}; judge server "
                  f"failures: {judged['judge_errors']}."]
    return "\n".join(lines) + "\n"


def _scores_figure(results: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [*BENCH_TYPES, "overall"]
    scores = headline_scores(results)
    values = [scores[name] or 0.0 for name in names]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bars = axes.bar(names, values, color=["#4c72b0"] * len(BENCH_TYPES) + ["#dd8452"])
    axes.bar_label(bars, labels=[_number(scores[name]) for name in names])
    axes.set_ylim(0, 105)
    axes.set_ylabel("score (0-100)")
    suffix = " (judge-free)" if results["judge_free"] else ""
    suffix = " (GAEA's scoring)" if results.get("scoring") == "gaea" else suffix
    axes.set_title(f"GAEA-Bench: {results['model']}{suffix}", fontsize=10)
    figure.tight_layout()
    return figure


def _distance_figure(results: dict[str, Any], distances_km: Sequence[float | None]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    total = len(distances_km)
    known = np.sort(np.array([d for d in distances_km if d is not None], dtype=float))
    figure, axes = plt.subplots(figsize=(6, 3.5))
    if total and len(known):
        # The curve is a share of ALL rows, so missing predictions keep it below 100 %.
        share = 100.0 * np.arange(1, len(known) + 1) / total
        axes.step(np.maximum(known, 0.01), share, where="post")
    for km in THRESHOLDS_KM:
        axes.axvline(km, color="grey", linestyle=":", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlim(0.1, 20_000)
    axes.set_ylim(0, 100)
    axes.set_xlabel("error (km)")
    axes.set_ylabel("% of all ground-truth rows")
    axes.set_title(f"Cumulative distance error: {results['model']}", fontsize=10)
    figure.tight_layout()
    return figure


def _write_png(path: Path, figure: Any) -> None:
    import io

    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
