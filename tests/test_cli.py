"""The `gaea` command tree: one parser for every command, alike in --help and in errors, fast to start.

Behaviour users meet is tested as real subprocesses (`python -m gaea.cli ...`); the walk over every
command uses `gaea.cli.main` in-process, which is the same code without a process start per command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaea.cli import ALL, COMMANDS, build_parser, main
from gaea.commands.parsing import iter_commands

REPO = Path(__file__).resolve().parents[1]
LEAVES = [leaf.prog for leaf in iter_commands(build_parser(ALL))]


def gaea(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gaea.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd or REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )


def one_line_error(result: subprocess.CompletedProcess, prog: str, *expected: str) -> str:
    """Exit code 2 and one stderr line `PROG: error: ...` containing every `expected` text."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_gaea_help_lists_every_command_and_imports_no_heavy_library() -> None:
    result = python(
        "import contextlib, io, sys\n"
        "from gaea.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['--help']) == 0\n"
        "print(out.getvalue())\n"
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'gradio', 'numpy') if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout
    for name in COMMANDS:
        assert f"\n    {name}" in result.stdout, name


def test_no_command_help_imports_torch() -> None:
    # Every command's --help in one process: torch, transformers and gradio load only when a command runs.
    result = python(
        "import contextlib, io, sys\n"
        "from gaea.cli import ALL, build_parser, main\n"
        "from gaea.commands.parsing import iter_commands\n"
        "for leaf in iter_commands(build_parser(ALL)):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([*leaf.prog.split()[1:], '--help']) == 0, leaf.prog\n"
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'gradio') if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout


@pytest.mark.parametrize("prog", LEAVES)
def test_every_command_has_the_same_help_layout(prog: str, capsys: pytest.CaptureFixture) -> None:
    assert main([*prog.split()[1:], "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {prog} ")
    assert "\nexample" in out, f"{prog} --help shows no example"
    description = out.split("\n\n")[1]
    assert description[:1].isupper() and description.rstrip().endswith("."), description


@pytest.mark.parametrize("prog", LEAVES)
def test_every_command_refuses_an_unknown_option_in_one_line(prog: str, capsys: pytest.CaptureFixture) -> None:
    assert main([*prog.split()[1:], "--no-such-option"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), captured.err
    assert f"(see {prog} --help)" in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize(
    ("args", "prog", "expected"),
    [
        ([], "gaea", "choose a command: ask, locate"),
        (["nope"], "gaea", "invalid choice: 'nope'"),
        (["data"], "gaea data", "choose a command: build, export, stats"),
        (["eval", "judge"], "gaea eval", "invalid choice: 'judge'"),
        (["finetune", "merge"], "gaea finetune merge", "required: --base"),
    ],
    ids=["nothing", "unknown", "group-alone", "unknown-subcommand", "missing-required"],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], prog: str, expected: str) -> None:
    one_line_error(gaea(*args), prog, expected, f"(see {prog} --help)")


def test_the_old_osm_form_still_works_with_a_deprecation_warning(shared_data: Path) -> None:
    extract = str(shared_data / "osm" / "west-oakland.osm.bz2")
    old = gaea("osm", extract, "37.8076", "-122.3004", "--json", "--limit", "3")
    new = gaea("osm", "near", "37.8076", "-122.3004", "--osm-file", extract, "--json", "--limit", "3")
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert old.stdout == new.stdout and len(new.stdout.splitlines()) == 3
    assert "gaea osm: warning: `gaea osm EXTRACT LAT LON` is deprecated" in old.stderr
    assert "deprecated" not in new.stderr


def test_overpass_as_an_osm_source_word_is_gone() -> None:
    one_line_error(gaea("osm", "overpass:http://127.0.0.1:9/api", "37.8", "-122.3"), "gaea osm",
                   "--overpass [--overpass-url URL]")


def test_finetune_without_a_command_trains_with_a_deprecation_warning(tmp_path: Path) -> None:
    result = gaea("finetune", "--learning_rate", "1e-4", cwd=tmp_path)
    assert "gaea finetune: warning: `gaea finetune --config ...` without a command is deprecated" in result.stderr
    # It reached `gaea finetune train`, which names what is missing.
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("gaea finetune train: error: missing model_name_or_path")
