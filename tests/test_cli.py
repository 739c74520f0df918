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
        (["data"], "gaea data", "choose a command: build, build-ranking, export, stats"),
        (["eval", "judge"], "gaea eval", "invalid choice: 'judge'"),
        (["finetune", "merge"], "gaea finetune merge", "required: --model"),
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


# ------------------------------------------------------------------------------------------------- one vocabulary


def warnings_of(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": warning: " in line]


def test_photos_is_a_deprecated_spelling_of_images(shared_data: Path, tmp_path: Path) -> None:
    extract = str(shared_data / "osm" / "west-oakland.osm.bz2")
    missing = str(tmp_path / "no-photos")
    for option in ("--images", "--photos"):
        result = gaea("data", "build", option, missing, "--out", str(tmp_path / "out"), "--osm-file", extract)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith("gaea data build: error: ")
        assert missing in result.stderr  # the value reached the build, under either spelling
        expected = ["gaea data build: warning: --photos is deprecated and will be removed; use --images"]
        assert warnings_of(result) == (expected if option == "--photos" else [])


def test_radius_is_a_deprecated_spelling_of_radius_m(shared_data: Path) -> None:
    point = ("37.8076", "-122.3004", "--osm-file", str(shared_data / "osm" / "west-oakland.osm.bz2"), "--json")
    new = gaea("osm", "near", *point, "--radius-m", "60", "--limit", "0")
    old = gaea("osm", "near", *point, "--radius", "60", "--limit", "0")
    wide = gaea("osm", "near", *point, "--limit", "0")
    assert new.returncode == old.returncode == 0
    assert new.stdout == old.stdout and 0 < len(new.stdout.splitlines()) < len(wide.stdout.splitlines())
    assert warnings_of(old) == ["gaea osm near: warning: --radius is deprecated and will be removed; use --radius-m"]
    assert warnings_of(new) == []


@pytest.mark.parametrize("option", ["--max-length", "--max_length"])
def test_finetune_options_are_kebab_case_with_the_recipe_spelling_accepted(option: str, tmp_path: Path) -> None:
    # The value reaches the configuration (its validation names it) under both spellings, with no warning.
    result = gaea("finetune", "train", "--output-dir", str(tmp_path / "run"), option, "8", cwd=tmp_path)
    one_line_error(result, "gaea finetune train", "max_length 8: too short")


def test_finetune_merge_takes_model_and_base_is_deprecated(tmp_path: Path) -> None:
    adapter = tmp_path / "no-adapter"
    for option in ("--model", "--base"):
        result = gaea("finetune", "merge", option, "some/base", "--adapter", str(adapter), "--out", str(tmp_path / "m"))
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith("gaea finetune merge: error: ")
        assert "'some/base'" in result.stderr.strip().splitlines()[-1]  # the value reached the merge
        expected = ["gaea finetune merge: warning: --base is deprecated and will be removed; use --model"]
        assert warnings_of(result) == (expected if option == "--base" else [])


def test_serve_names_the_base_model_with_served_model_and_the_old_name_is_gone() -> None:
    args = build_parser("serve").parse_args(["serve", "--model", "m", "--served-model", "base"])
    assert args.served_model == "base"
    one_line_error(gaea("serve", "--model", "m", "--served-model-name", "base"), "gaea serve",
                   "unrecognized arguments: --served-model-name")


# ------------------------------------------------------------------------------- options that cannot apply


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-model-len", "8192"), ("--images-per-prompt", "2"), ("--served-model", "base"),
     ("--tensor-parallel-size", "2")],
)
def test_serve_on_transformers_refuses_vllm_options(option: str, value: str) -> None:
    result = gaea("serve", "--engine", "transformers", "--model", "m", option, value, "--startup-timeout", "5")
    one_line_error(result, "gaea serve", f"{option} applies to vLLM only", "transformers serve")


def test_data_build_says_workers_do_not_apply_to_overpass(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-photos")
    result = gaea("data", "build", "--images", missing, "--out", str(tmp_path / "o"), "--overpass", "--workers", "3")
    assert warnings_of(result) == [
        "gaea data build: warning: --workers 3 ignored: Overpass lookups run in one process"
    ]
    quiet = gaea("data", "build", "--images", missing, "--out", str(tmp_path / "o"), "--overpass")
    assert warnings_of(quiet) == []
    cache = gaea("data", "build", "--images", missing, "--out", str(tmp_path / "o"), "--osm-file", missing,
                 "--overpass-cache-dir", str(tmp_path / "cache"))
    one_line_error(cache, "gaea data build", "--overpass-cache-dir applies with --overpass")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--json", "--stream"], "--stream prints the answer as it comes; --json"),
        (["--k-similar", "4"], "--k-similar applies to the neighbours from a --gallery"),
        (["--k-dissimilar", "4", "--encoder", "enc"],
         "--encoder applies to the queries of a --gallery or a --location-model"),
        (["--base-url", "http://127.0.0.1:9/v1", "--device", "cpu"], "--device applies to the transformers backend"),
        (["--timeout", "5"], "--timeout applies to the openai backend"),
        (["--api-key", "k", "--served-model", "m"], "--served-model and --api-key apply to the openai backend"),
    ],
    ids=["json-stream", "k-without-gallery", "encoder-without-gallery", "device-over-http", "timeout-in-process",
         "key-in-process"],
)
def test_ask_refuses_options_that_cannot_apply(photos_dir: Path, args: list[str], expected: str) -> None:
    result = gaea("ask", *args, "--image", str(photos_dir / "DSCN0010.jpg"), "Where is this?")
    one_line_error(result, "gaea ask", expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "m"], "--model applies when a model locates --images"),
        (["--gallery", "g", "--concurrency", "4"], "--gallery and --concurrency apply when a model locates"),
        (["--temperature", "0.7"], "--temperature applies when a model locates --images"),
    ],
)
def test_eval_geo_with_predictions_refuses_model_options(shared_data: Path, tmp_path: Path, args: list[str],
                                                        expected: str) -> None:
    truth = shared_data / "photos" / "expected_gps.csv"
    result = gaea("eval", "geo", "--truth", str(truth), "--predictions", str(truth), "--out", str(tmp_path / "r"),
                  *args)
    one_line_error(result, "gaea eval geo", expected, "--predictions are scored as they are")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["locate", "photo.jpg"], ["eval", "geo", "--truth", "t.csv", "--images", "d",
                                                               "--out", "r"]], ids=["locate", "eval-geo"])
def test_commands_that_only_locate_take_no_map_data(command: list[str], tmp_path: Path) -> None:
    # Map data grounds answers about the surroundings; locating a photo never reads it.
    result = gaea(*command, "--osm-file", "city.osm.pbf", cwd=tmp_path)
    prog = "gaea " + " ".join(command[:2] if command[0] == "eval" else command[:1])
    one_line_error(result, prog, "unrecognized arguments: --osm-file city.osm.pbf")


def test_eval_bench_refuses_judge_options_with_judge_free(tmp_path: Path) -> None:
    result = gaea("eval", "bench", "--dataset", str(tmp_path / "none.jsonl"), "--judge-free", "--judge-attempts",
                  "5", "--out", str(tmp_path / "r"))
    one_line_error(result, "gaea eval bench", "--judge-attempts applies to an LLM judge, not to --judge-free")


def test_eval_says_concurrency_does_not_apply_in_process(tmp_path: Path) -> None:
    result = gaea("eval", "bench", "--dataset", str(tmp_path / "none.jsonl"), "--judge-free", "--concurrency", "8",
                  "--out", str(tmp_path / "r"))
    assert warnings_of(result) == [
        "gaea eval bench: warning: --concurrency 8 ignored: a model in this process answers one request at a time "
        "(serve it with `gaea serve` and pass --base-url to answer in parallel)"
    ]
    assert result.returncode == 2  # then the missing dataset
    quiet = gaea("eval", "bench", "--dataset", str(tmp_path / "none.jsonl"), "--judge-free",
                 "--out", str(tmp_path / "r"))
    assert warnings_of(quiet) == []


def test_finetune_says_which_settings_go_unused(tmp_path: Path) -> None:
    result = gaea("finetune", "train", "--use-lora", "false", "--lora-r", "8", "--merger-learning-rate", "1e-5",
                  cwd=tmp_path)
    assert warnings_of(result) == [
        "gaea finetune train: warning: lora_r unused: use_lora is false",
        "gaea finetune train: warning: merger_learning_rate unused: train_merger is false",
    ]
    assert result.stderr.strip().splitlines()[-1].startswith("gaea finetune train: error: missing")


# ------------------------------------------------------------------------------------ nothing happened is said


def test_osm_near_a_point_outside_the_extract_is_an_error(shared_data: Path) -> None:
    kotka = str(shared_data / "osm" / "kotka.osm.pbf")
    result = gaea("osm", "near", "60.0", "26.95", "--osm-file", kotka)
    one_line_error(result, "gaea osm near", "57.8 km outside osm-file:kotka.osm.pbf",
                   "lat 60.52000 to 60.54000, lon 26.93000 to 26.97000")
    assert result.stdout == ""
    edge = gaea("osm", "near", "60.5405", "26.95", "--osm-file", kotka, "--limit", "1")
    assert edge.returncode == 0 and len(edge.stdout.splitlines()) == 1
    assert warnings_of(edge) == [
        "gaea osm near: warning: (60.54050, 26.95000) is 56 m outside osm-file:kotka.osm.pbf (lat 60.52000 to "
        "60.54000, lon 26.93000 to 26.97000); only the part of the circle inside it is listed"
    ]
    inside = gaea("osm", "near", "48.136", "10.0695", "--osm-file", str(shared_data / "osm" / "kirchberg-no-pois.osm"),
                  "--keys", "amenity")
    # Inside the extract, none is an answer: the place has no amenity.
    assert inside.returncode == 0 and inside.stdout == "" and "0 features within 1000 m" in inside.stderr


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_eval_geo_predictions_matching_no_truth_id_is_an_error(tmp_path: Path) -> None:
    truth = write_csv(tmp_path / "truth.csv", "IMG_ID,LAT,LON",
                      ["im2gps_1.jpg,43.46,11.88", "im2gps_2.jpg,48.85,2.35", "im2gps_3.jpg,35.68,139.69",
                       "im2gps_4.jpg,-33.87,151.21"])
    predictions = write_csv(tmp_path / "preds.csv", "id,lat,lon", ["1.jpg,43.4,11.8", "2.jpg,1,2"])
    result = gaea("eval", "geo", "--truth", str(truth), "--predictions", str(predictions), "--out", str(tmp_path / "r"))
    line = one_line_error(result, "gaea eval geo", f"no id of {predictions} (2 rows, e.g. '1.jpg', '2.jpg')",
                          f"is an id of {truth} (4 rows, e.g. 'im2gps_1.jpg', 'im2gps_2.jpg', 'im2gps_3.jpg', ...)")
    assert "are they the same benchmark?" in line
    assert not (tmp_path / "r").exists()


def test_eval_geo_predictions_without_one_usable_row_is_an_error(tmp_path: Path) -> None:
    truth = write_csv(tmp_path / "truth.csv", "IMG_ID,LAT,LON", ["a.jpg,43.46,11.88", "b.jpg,48.85,2.35", "c.jpg,1,2"])
    predictions = write_csv(tmp_path / "preds.csv", "id,lat,lon", ["a.jpg,true,11.8", "b.jpg,95,2", "c.jpg,nan,inf"])
    result = gaea("eval", "geo", "--truth", str(truth), "--predictions", str(predictions), "--out", str(tmp_path / "r"))
    one_line_error(result, "gaea eval geo", f"{predictions}: none of its 3 rows of ground-truth ids gives a usable "
                   "prediction (e.g. 'a.jpg': no usable coordinates: lat 'true', lon '11.8'")
    assert not (tmp_path / "r").exists()


def test_eval_geo_says_why_a_prediction_row_is_unusable(tmp_path: Path) -> None:
    from eval.geo_eval import read_predictions

    predictions = write_csv(tmp_path / "preds.csv", "id,lat,lon", ["a.jpg,true,11.8", "b.jpg,,", "c.jpg,43.4,11.8"])
    guesses = read_predictions(predictions)
    assert guesses["a.jpg"].error.startswith("no usable coordinates: lat 'true', lon '11.8'")
    assert guesses["b.jpg"].error == "no prediction" and guesses["c.jpg"].error is None


def test_eval_geo_warns_about_prediction_ids_not_in_the_truth(shared_data: Path, tmp_path: Path) -> None:
    truth = shared_data / "photos" / "expected_gps.csv"
    predictions = write_csv(tmp_path / "preds.csv", "id,prediction", ['DSCN0010.jpg,"Arezzo, Italy"', "x.jpg,Rome"])
    result = gaea("eval", "geo", "--truth", str(truth), "--predictions", str(predictions), "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert warnings_of(result) == [
        f"gaea eval geo: warning: 1 of the 2 ids of {predictions} are not in {truth} and are not scored, e.g. 'x.jpg'"
    ]


# ------------------------------------------------------------------------------------- the README's table


def test_the_readme_command_table_is_what_the_parsers_say(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAEA_")}  # defaults as shipped
    check = [sys.executable, str(REPO / "tools" / "cli_table.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for prog in LEAVES:
        assert f"| `{prog}` |" in readme and f"<code>{prog}</code> options" in readme
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace("| `--radius-m M` |", "| `--radius M` |"), encoding="utf-8")
    result = subprocess.run([*check, "--readme", str(stale)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert "run `python tools/cli_table.py`" in result.stderr
