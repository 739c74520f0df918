"""The bad-input matrix of benchmarks/robustness.py, run as tests: every crafted input (a named pipe, a
socket, a device, names that are not UTF-8, a 144-megapixel PNG, symlink loops, malformed JSONL lines, a CSV
in latin-1, ...) through real `gaea data build` / `gaea gallery build` processes, each ending in a clean
one-line error, a skip with a reason, or its use under a readable name; none may hang.

Cases of one scene (a photo folder, a JSONL or a CSV manifest) share one process, to keep the suite short;
`python benchmarks/robustness.py` runs each alone and times it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from benchmarks.robustness import CASES, Case, Outcome, run_cases

TIMEOUT_S = 300  # a generous bound only to catch a hang; how fast each case is, the benchmark says


def _groups() -> dict[tuple[str, str, int], list[Case]]:
    """Cases that can share a process: same command and scene; each `own` case is a group of its own."""
    groups: dict[tuple[str, str, int], list[Case]] = {}
    for number, case in enumerate(CASES):
        groups.setdefault((case.command, case.scene, number if case.scene == "own" else -1), []).append(case)
    return groups


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path, shared_data: Path) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    for number, cases in enumerate(_groups().values()):
        root = tmp_path_factory.mktemp(f"scene{number}")
        for outcome in run_cases(cases, root, encoder=tiny_encoder, timeout=TIMEOUT_S):
            results[outcome.case.name] = outcome
    return results


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_bad_input_ends_cleanly(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.problem is None, f"{name}: {outcome.problem}\n{outcome.run.stderr[-2000:]}"


def test_the_matrix_covers_both_builders_and_every_outcome() -> None:
    commands = {case.command for case in CASES}
    assert {"data build", "gallery build", "finetune"} <= commands
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    by_command = {command: {case.name.split(": ", 1)[1] for case in group}
                  for command, group in itertools.groupby(sorted(CASES, key=lambda c: c.command), lambda c: c.command)}
    assert by_command["data build"] >= {"named pipe called x.jpg", "144 MP PNG", "non-UTF-8 file name",
                                        "symlink loop (folder)", "JSONL line 42", "JSONL latitude true"}
    assert by_command["gallery build"] >= by_command["data build"]
