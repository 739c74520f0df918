"""The bad-input matrix: crafted inputs through the real commands, each judged by what a user sees.

    .venv/bin/python benchmarks/robustness.py [--only TEXT ...] [--timeout 60]
    GAEA_ROBUSTNESS_CODE=../old-checkout .venv/bin/python benchmarks/robustness.py   # how another version fares

Every case runs ``python -m gaea.cli ...`` in a process of its own, on a scene built for it in a
temporary folder (model-server cases: against a misbehaving loopback chat server, with a decoy
OPENAI_API_KEY in the environment that no server may receive), and must end in one of three ways:

- a clean error: exit code 2, one line on stderr (log warnings and progress bars aside) that says what is
  wrong, no traceback;
- skipped with a reason: exit 0, the input listed (``skipped.jsonl``, the gallery manifest) under a
  readable name with its reason code and a detail that says where it is;
- used: exit 0, the input in the output, under a readable name;

showing none of the case's `hidden` texts (escape sequences, credentials, what a cap must cut off) on
stdout or stderr; and it must finish in under 10 s (a hang is killed at ``--timeout``). The script prints one line per
case and the totals. There is no baseline: the figure is how many of the cases behave (all of them).

The table `CASES` is meant to grow. A case names the command it runs (`COMMANDS`), the scene its bad
input goes into (a folder of photos, a JSONL or CSV manifest, each holding one good photo; or ``own``:
the case writes the whole command line), and a `plant` function that puts the input into the scene and
returns the `Expect`ed outcome. `tests/test_robustness_inputs.py` runs the same table (cases of one
scene together, to keep the suite short) and fails on any case that misbehaves.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import SSE_DONE, SSE_HEADERS, Answer, background_chat_server, sse_event  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
#: The checkout whose code the cases run: this one, or (to see what an older version did) another.
CODE = Path(os.environ.get("GAEA_ROBUSTNESS_CODE", REPO))
GOOD = "DSCN0010.jpg"  # a photo of Arezzo with EXIF GPS
NO_GPS = "Canon_40D.jpg"
ARE_LAT, ARE_LON = 43.4674, 11.8851
LIMIT_S = 10.0


# ---------------------------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    """The inputs of one run: `photos/` holding one good photo, and manifests `m.jsonl` / `m.csv` listing it;
    cases add their bad inputs, then `write` saves the manifests."""

    root: Path
    encoder: Path | None = None
    jsonl: list[bytes] = field(default_factory=list)
    csv: list[bytes] = field(default_factory=lambda: [b"path,lat,lon\n"])

    def __post_init__(self) -> None:
        self.photos.mkdir(parents=True, exist_ok=True)
        good = self.copy(GOOD, "good.jpg")
        self.add_jsonl(json.dumps({"path": str(good), "lat": ARE_LAT, "lon": ARE_LON}).encode())
        self.add_csv(f"{good},{ARE_LAT},{ARE_LON}".encode())

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    def copy(self, shared_name: str, name: str | bytes, *, folder: Path | None = None) -> Path:
        """A copy of a shared photo under `folder` (default `photos/`), named `name` (bytes: any bytes)."""
        target = Path(os.fsdecode(os.path.join(os.fsencode(folder or self.photos), os.fsencode(name))))
        target.write_bytes((SHARED / "photos" / shared_name).read_bytes())
        return target

    def add_jsonl(self, line: bytes) -> str:
        self.jsonl.append(line + b"\n")
        return f"m.jsonl, line {len(self.jsonl)}"

    def add_csv(self, line: bytes) -> str:
        self.csv.append(line + b"\n")
        return f"m.csv, line {len(self.csv)}"

    def write(self) -> None:
        (self.root / "m.jsonl").write_bytes(b"".join(self.jsonl))
        (self.root / "m.csv").write_bytes(b"".join(self.csv))

    def spec(self, scene: str) -> str:
        return str(self.photos if scene == "folder" else self.root / f"m.{scene}")


@dataclass(frozen=True)
class Expect:
    """What must come out: an `error` whose line contains `says`; the input `skipped` as `key` with
    `reason` and a detail containing `says`; or the input `used` under the name `key`."""

    outcome: str
    key: str = ""
    reason: str = ""
    says: str = ""
    argv: tuple[str, ...] = ()  # for scene "own": the command line after `gaea`
    absent: str = ""  # a text no name in the output may contain
    hidden: tuple[str, ...] = ()  # texts neither stdout nor stderr may show


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    scene: str  # folder, jsonl, csv or own
    plant: Callable[[Scene], Expect]


def _osm() -> str:
    return str(SHARED / "osm" / "kirchberg-no-pois.osm")


#: How each command runs on a spec, writing to `out`.
COMMANDS: dict[str, Callable[[str, Path, Scene], list[str]]] = {
    "data build": lambda spec, out, scene: ["data", "build", "--images", spec, "--out", str(out), "--osm-file",
                                            _osm(), "--workers", "1", "--no-hf", "--quiet"],
    "gallery build": lambda spec, out, scene: ["gallery", "build", "--images", spec, "--out", str(out),
                                               "--encoder", str(scene.encoder), "--device", "cpu"],
}


# ---------------------------------------------------------------------------------------------- the cases


def _fifo(scene: Scene) -> Expect:
    os.mkfifo(scene.photos / "pipe.jpg")
    return Expect("skipped", "pipe.jpg", "not_a_file", "named pipe")


def _socket(scene: Scene) -> Expect:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(scene.photos / "sock.jpg"))
    return Expect("skipped", "sock.jpg", "not_a_file", "socket")


def _device(scene: Scene) -> Expect:
    (scene.photos / "zero.jpg").symlink_to("/dev/zero")
    return Expect("skipped", "zero.jpg", "not_a_file", "character device")


def _non_utf8_name(scene: Scene) -> Expect:
    scene.copy(GOOD, b"caf\xe9.jpg")
    return Expect("used", "caf\\xe9.jpg")


def _non_utf8_name_without_gps(scene: Scene) -> Expect:
    scene.copy(NO_GPS, b"\xff\xfeno-gps.jpg")
    return Expect("skipped", "\\xff\\xfeno-gps.jpg", "no_gps", "\\xff\\xfeno-gps.jpg")


def _huge_png(scene: Scene) -> Expect:
    from PIL import Image

    Image.new("1", (12000, 12000)).save(scene.photos / "huge.png")  # 144 MP in 18 KB
    return Expect("skipped", "huge.png", "too_large", "12000x12000")


def _file_loop(scene: Scene) -> Expect:
    (scene.photos / "loop.jpg").symlink_to("loop.jpg")
    return Expect("skipped", "loop.jpg", "unreadable", "symbolic links")


def _folder_loop(scene: Scene) -> Expect:
    (scene.photos / "sub").mkdir()
    (scene.photos / "sub" / "back").symlink_to("..")
    scene.copy(GOOD, "inside.jpg", folder=scene.photos / "sub")
    return Expect("used", "sub/inside.jpg", absent="back/")


def _empty_file(scene: Scene) -> Expect:
    (scene.photos / "empty.jpg").write_bytes(b"")
    return Expect("skipped", "empty.jpg", "empty", "empty")


def _text_as_jpeg(scene: Scene) -> Expect:
    (scene.photos / "notes.jpg").write_text("not a photo\n")
    return Expect("skipped", "notes.jpg", "not_an_image", "not an image")


def _jsonl_line(line: bytes, reason: str, says: str) -> Callable[[Scene], Expect]:
    def plant(scene: Scene) -> Expect:
        where = scene.add_jsonl(line)
        return Expect("skipped", where, reason, f"{where}: {says}")

    return plant


def _jsonl_fifo(scene: Scene) -> Expect:
    os.mkfifo(scene.root / "named.jpg")
    scene.add_jsonl(json.dumps({"path": str(scene.root / "named.jpg"), "lat": 1.5, "lon": 2.5}).encode())
    return Expect("skipped", str(scene.root / "named.jpg"), "not_a_file", "named pipe")


def _jsonl_boolean_latitude(scene: Scene) -> Expect:
    where = scene.add_jsonl(json.dumps({"path": str(scene.copy(GOOD, "bool.jpg")), "lat": True, "lon": 11}).encode())
    return Expect("skipped", str(scene.photos / "bool.jpg"), "bad_coordinates", f"{where}: latitude True")


def _jsonl_same_path_twice(scene: Scene) -> Expect:
    again = json.dumps({"path": str(scene.photos / "good.jpg"), "lat": ARE_LAT, "lon": ARE_LON}).encode()
    where = scene.add_jsonl(again)
    return Expect("skipped", str(scene.photos / "good.jpg"), "duplicate", f"{where}: ")


def _jsonl_impossible_name(scene: Scene) -> Expect:
    scene.add_jsonl(b'{"path": "lone-\\ud800.jpg", "lat": 1.5, "lon": 2.5}')
    return Expect("skipped", "lone-\\ud800.jpg", "unreadable", "not a possible file name")


def _csv_latin1_name(scene: Scene) -> Expect:
    photo = scene.copy(GOOD, b"Z\xfcrich.jpg")
    scene.add_csv(os.fsencode(photo) + f",{ARE_LAT},{ARE_LON}".encode())
    return Expect("used", os.fsencode(photo).decode("utf-8", "backslashreplace"))


def _csv_word_latitude(scene: Scene) -> Expect:
    where = scene.add_csv(f"{scene.copy(GOOD, 'north.jpg')},north,{ARE_LON}".encode())
    return Expect("skipped", str(scene.photos / "north.jpg"), "bad_coordinates", f"{where}: latitude 'north'")


def _own(argv: Callable[[Scene], list[str]], outcome: str, says: str) -> Callable[[Scene], Expect]:
    def plant(scene: Scene) -> Expect:
        return Expect(outcome, says=says, argv=tuple(argv(scene)))

    return plant


def _no_gps_folder(scene: Scene) -> str:
    folder = scene.root / "no-gps"
    folder.mkdir()
    scene.copy(NO_GPS, NO_GPS, folder=folder)
    return str(folder)


def _capitalised_manifest(command: str) -> Callable[[Scene], Expect]:
    def plant(scene: Scene) -> Expect:
        manifest = scene.root / "Photos.csv"
        manifest.write_text(f"File,Latitude,Longitude\n{scene.photos / 'good.jpg'},{ARE_LAT},{ARE_LON}\n")
        argv = _with(command, lambda _: str(manifest))(scene)
        return Expect("used", str(scene.photos / "good.jpg"), argv=tuple(argv))

    return plant


def _empty_training_set(scene: Scene) -> list[str]:
    folder = scene.root / "empty-set"
    folder.mkdir()
    (folder / "qa.jsonl").write_text("")
    return ["finetune", "train", "--data", str(folder), "--model_name_or_path", str(scene.root),
            "--output-dir", str(scene.root / "run")]


def _latin1_truth(scene: Scene) -> list[str]:
    truth, predictions = scene.root / "truth.csv", scene.root / "predictions.csv"
    truth.write_bytes(b"id,lat,lon,city,country\nz1,47.37,8.54,Z\xfcrich,Switzerland\n")
    predictions.write_text("id,lat,lon\nz1,47.4,8.5\n")
    return ["eval", "geo", "--truth", str(truth), "--predictions", str(predictions), "--out", str(scene.root / "run")]


def _latin1_recipe(scene: Scene) -> list[str]:
    recipe = scene.root / "recipe.yaml"
    recipe.write_bytes(b"output_dir: runs/k\xf6ln\n")
    return ["finetune", "train", "--config", str(recipe), "--data", str(scene.root),
            "--model_name_or_path", str(scene.root)]


def _with(command: str, spec: Callable[[Scene], str]) -> Callable[[Scene], list[str]]:
    return lambda scene: COMMANDS[command](spec(scene), scene.root / "out-own", scene)


_FOLDER_CASES = [
    ("named pipe called x.jpg", _fifo), ("socket called x.jpg", _socket), ("link to /dev/zero", _device),
    ("non-UTF-8 file name", _non_utf8_name), ("non-UTF-8 name without GPS", _non_utf8_name_without_gps),
    ("144 MP PNG", _huge_png), ("symlink loop (file)", _file_loop), ("symlink loop (folder)", _folder_loop),
    ("empty file", _empty_file), ("text file called .jpg", _text_as_jpeg),
]
_JSONL_CASES = [
    ("JSONL line 42", _jsonl_line(b"42", "bad_row", "a JSON number, not an object")),
    ("JSONL line [1,2,3]", _jsonl_line(b"[1, 2, 3]", "bad_row", "a JSON array, not an object")),
    ("JSONL line null", _jsonl_line(b"null", "bad_row", "a JSON null, not an object")),
    ("JSONL broken line", _jsonl_line(b'{"path": "x.jpg", "lat": 1', "bad_row", "not valid JSON")),
    ("JSONL non-UTF-8 line", _jsonl_line(b'{"path": "\xff.jpg", "lat": 1, "lon": 2}', "bad_row", "not UTF-8")),
    ("JSONL row without a path", _jsonl_line(b'{"lat": 1.5, "lon": 2.5}', "bad_row", "it names no image")),
    ("JSONL latitude true", _jsonl_boolean_latitude), ("JSONL same path twice", _jsonl_same_path_twice),
    ("JSONL names a FIFO", _jsonl_fifo), ("JSONL impossible file name", _jsonl_impossible_name),
]
_CSV_CASES = [("CSV non-UTF-8 bytes (latin-1 name)", _csv_latin1_name), ("CSV latitude 'north'", _csv_word_latitude)]

# `gaea ask` against loopback chat servers that misbehave. A stalled server is given `--timeout 1` and the
# endless ones `--deadline 2` so that each case stays short; with the defaults (20 s, 300 s) a stall fails in 41 s.

DECOY_OPENAI_KEY = "sk-decoy-robustness-0000"
URL_USER, URL_PASSWORD, URL_QUERY_KEY = "robust", "p4ss-robustness", "qk-robustness"
_ANSWER = [sse_event("Arezzo"), sse_event(", Italy"), sse_event(finish_reason="stop"), SSE_DONE]


def _streamed(chunks: Callable[[], Iterator[bytes]]) -> Answer:
    return lambda path, headers: (200, SSE_HEADERS, chunks())


def _trickle() -> Iterator[bytes]:
    for index in range(300):
        yield sse_event(f"w{index} ")
        time.sleep(0.2)


def _keep_alives() -> Iterator[bytes]:
    yield sse_event()
    for _ in range(300):
        yield b": keep-alive\n\n"
        time.sleep(0.2)


def _endless() -> Iterator[bytes]:
    for index in range(200_000):
        yield sse_event(f"w{index} ")


def _stall(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Iterator[bytes]]:
    time.sleep(30)
    return 200, SSE_HEADERS, iter(_ANSWER)


def _refuse_any_key(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Iterator[bytes]]:
    if "authorization" in headers:
        return 401, {}, iter([b'{"error": {"message": "a key reached the local model server"}}'])
    return 200, SSE_HEADERS, iter(_ANSWER)


def _require_url_credentials(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Iterator[bytes]]:
    basic = "Basic " + base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode()
    if path != f"/v1/chat/completions?key={URL_QUERY_KEY}" or headers.get("authorization") != basic:
        return 401, {}, iter([b'{"error": {"message": "wrong path or credentials"}}'])
    return 200, SSE_HEADERS, iter(_ANSWER)


def _chat(answer: Answer, outcome: str, says: str = "", *, options: tuple[str, ...] = (),
          hidden: tuple[str, ...] = (), url: Callable[[str], str] = str) -> Callable[[Scene], Expect]:
    def plant(scene: Scene) -> Expect:
        argv = ["ask", "--base-url", url(background_chat_server(answer)), "--served-model", "m", "--image",
                str(scene.photos / "good.jpg"), "--stream", *options, "Where was this photo taken?"]
        return Expect(outcome, says=says, argv=tuple(argv), hidden=(DECOY_OPENAI_KEY, *hidden))

    return plant


_SERVER_CASES = [
    ("stream that trickles forever", _chat(_streamed(_trickle), "error", "did not finish its answer within 2 s",
                                           options=("--deadline", "2"))),
    ("SSE keep-alives forever", _chat(_streamed(_keep_alives), "error", "did not finish its answer within 2 s",
                                      options=("--deadline", "2"))),
    ("endless stream", _chat(_streamed(_endless), "used", options=("--max-new-tokens", "16"), hidden=("w40 ",))),
    ("stream cut before [DONE]", _chat(_streamed(lambda: iter(_ANSWER[:2])), "error", "broke off its answer")),
    ("stalled server", _chat(_stall, "error", "did not answer in time (2 tries of 1 s", options=("--timeout", "1"))),
    ("terminal escapes in the answer", _chat(_streamed(lambda: iter([
        sse_event("\x1b]0;pwned\x07Arezzo"), sse_event("\x1b[2K\x1b[1A, Italy\x1b[0m"), SSE_DONE])), "used",
        hidden=("\x1b", "\x07"))),
    ("terminal escapes in an error", _chat(lambda path, headers: (400, {}, iter([
        b'{"error": {"message": "bad \\u001b[31mrequest\\u001b[0m"}}'])), "error", "HTTP 400): bad request",
        hidden=("\x1b",))),
    ("OPENAI_API_KEY set, local server", _chat(_refuse_any_key, "used")),
    ("URL with user:pass and ?key=", _chat(_require_url_credentials, "used", hidden=(URL_PASSWORD, URL_QUERY_KEY),
                                          url=lambda base: base.replace("http://", f"http://{URL_USER}:{URL_PASSWORD}@")
                                          + f"?key={URL_QUERY_KEY}")),
]

CASES: list[Case] = [
    *(Case(f"{command}: {name}", command, "folder", plant)
      for command in COMMANDS for name, plant in _FOLDER_CASES),
    *(Case(f"{command}: {name}", command, "jsonl", plant)
      for command in COMMANDS for name, plant in _JSONL_CASES),
    *(Case(f"{command}: {name}", command, "csv", plant) for command in COMMANDS for name, plant in _CSV_CASES),
    Case("data build: no photo with GPS", "data build", "own",
         _own(_with("data build", _no_gps_folder), "error", "no usable photo (no_gps 1)")),
    Case("gallery build: no photo with GPS", "gallery build", "own",
         _own(_with("gallery build", _no_gps_folder), "error",
              "no-gps: no usable photo to put in a gallery (no_gps 1")),
    *(Case(f"{command}: CSV headed File,Latitude,Longitude", command, "own", _capitalised_manifest(command))
      for command in COMMANDS),
    *(Case(f"{command}: bare hub id", command, "own",
           _own(_with(command, lambda scene: "owner/name"), "error", "is written hf:owner/name"))
      for command in COMMANDS),
    *(Case(f"{command}: hub dataset offline", command, "own",
           _own(_with(command, lambda scene: "hf:owner/name"), "error", "cannot download the dataset 'owner/name'"))
      for command in COMMANDS),
    Case("finetune: empty dataset", "finetune", "own", _own(_empty_training_set, "error", "no training sample")),
    Case("finetune: recipe not UTF-8", "finetune", "own", _own(_latin1_recipe, "error", "recipe.yaml: not valid YAML")),
    Case("eval geo: truth CSV not UTF-8", "eval geo", "own", _own(_latin1_truth, "used", "")),
    *(Case(f"ask: {name}", "ask", "own", plant) for name, plant in _SERVER_CASES),
]


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Run:
    """One process and what it left: exit code, stderr, time, and the output folder."""

    command: str
    out: Path
    returncode: int | None
    stderr: str
    seconds: float
    cpu_seconds: float = 0.0
    stdout: str = ""

    def skipped(self) -> list[dict]:
        if self.command == "data build":
            path = self.out / "skipped.jsonl"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        manifest = self.out / "manifest.json"
        return json.loads(manifest.read_text()).get("skipped", []) if manifest.exists() else []

    def names(self) -> list[str]:
        """Every photo name the output holds (gallery ids, skipped photos)."""
        metadata = self.out / "metadata.jsonl"
        ids = [json.loads(line)["id"] for line in metadata.read_text().splitlines()] if metadata.exists() else []
        return ids + [str(entry.get("photo")) for entry in self.skipped()]

    def used(self, key: str) -> bool:
        if not key:  # the command's own output is all there is to check: it ran through
            return True
        if self.command == "data build":
            photo_id = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
            return any((self.out / "images").glob(f"{photo_id}.*"))
        metadata = self.out / "metadata.jsonl"
        return metadata.exists() and any(json.loads(line)["id"].endswith(key)
                                         for line in metadata.read_text().splitlines())


def run_gaea(argv: list[str], *, command: str, out: Path, timeout: float) -> Run:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(CODE), TOKENIZERS_PARALLELISM="false",
               GAEA_LOG_LEVEL="WARNING", OPENAI_API_KEY=DECOY_OPENAI_KEY)
    started, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run([sys.executable, "-m", "gaea.cli", *argv], capture_output=True, timeout=timeout,
                              env=env, cwd=out.parent, stdin=subprocess.DEVNULL)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, stdout, stderr = None, expired.stdout or b"", expired.stderr or b""
    return Run(command, out, returncode, stderr.decode("utf-8", "replace"), time.perf_counter() - started,
               _children_cpu() - cpu, stdout.decode("utf-8", "replace"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def problem(expect: Expect, run: Run) -> str | None:
    """What is wrong with how `run` treated the case (None: it behaved)."""
    if run.returncode is None:
        return f"hung (killed after {run.seconds:.0f} s)"
    if "Traceback" in run.stderr:
        return "a traceback: " + run.stderr.strip().splitlines()[-1]
    shown = [text for text in expect.hidden if text in run.stdout + run.stderr]
    if shown:
        return f"showed {shown!r}"
    if expect.outcome == "error":
        lines = [line for line in run.stderr.splitlines() if line.strip() and not _noise(line)]
        if run.returncode != 2 or len(lines) != 1 or expect.says not in lines[0]:
            return f"expected one error line with {expect.says!r} and exit 2, got exit {run.returncode}: {lines}"
        return None
    if run.returncode != 0:
        return f"exit {run.returncode}: {run.stderr.strip()[-300:]}"
    if expect.absent and any(expect.absent in name for name in run.names()):
        return f"the output names something with {expect.absent!r}: {run.names()}"
    if expect.outcome == "used":
        return None if run.used(expect.key) else f"{expect.key} was not used"
    entries = [entry for entry in run.skipped() if entry.get("photo") == expect.key]
    if not entries:
        return f"{expect.key} is not listed as skipped ({run.skipped()})"
    reason, detail = entries[0]["reason"], entries[0]["detail"]
    if reason != expect.reason or expect.says not in detail:
        return f"skipped as {reason}: {detail!r} (expected {expect.reason}, {expect.says!r})"
    return None


def _noise(line: str) -> bool:
    """Log warnings and progress bars (redrawn in place on a terminal) are not messages."""
    return line.startswith("WARNING") or re.search(r"\d+%\|", line) is not None


@dataclass
class Outcome:
    case: Case
    expect: Expect
    run: Run
    problem: str | None


def run_cases(cases: list[Case], root: Path, *, encoder: Path | None, timeout: float) -> list[Outcome]:
    """Run `cases`, which share a command and a scene (not ``own``), in one process on one scene;
    an ``own`` case runs alone."""
    root.mkdir(parents=True, exist_ok=True)
    scene = Scene(root, encoder=encoder)
    expects = [case.plant(scene) for case in cases]
    scene.write()
    command = cases[0].command
    if cases[0].scene == "own":
        out = root / "out-own"
        run = run_gaea(list(expects[0].argv), command=command, out=out, timeout=timeout)
    else:
        out = root / "out"
        run = run_gaea(COMMANDS[command](scene.spec(cases[0].scene), out, scene), command=command, out=out,
                       timeout=timeout)
    return [Outcome(case, expect, run, problem(expect, run)) for case, expect in zip(cases, expects, strict=True)]


def tiny_encoder(root: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from gaea.models.tiny import build_tiny_encoder

    return build_tiny_encoder(root / "encoder")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only the cases whose name contains this (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as hung (60)")
    args = parser.parse_args()
    cases = [case for case in CASES if not args.only or any(text in case.name for text in args.only)]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gaea-robustness-") as tmp:
        encoder = tiny_encoder(Path(tmp)) if any(case.command == "gallery build" for case in cases) else None
        for number, case in enumerate(cases):
            (outcome,) = run_cases([case], Path(tmp) / f"case{number}", encoder=encoder, timeout=args.timeout)
            outcomes.append(outcome)
            verdict = "ok" if outcome.problem is None else f"WRONG: {outcome.problem}"
            print(f"{outcome.run.seconds:5.1f} s ({outcome.run.cpu_seconds:4.1f} s CPU)  {outcome.expect.outcome:8}  "
                  f"{case.name}: {verdict}", flush=True)
    counts = Counter(o.expect.outcome for o in outcomes if o.problem is None)
    slow = [o for o in outcomes if o.run.seconds >= LIMIT_S]
    slow_cpu = [o for o in outcomes if o.run.cpu_seconds >= LIMIT_S]
    wrong = [o for o in outcomes if o.problem is not None]
    print(f"\n{len(outcomes)} cases: {counts['error']} clean one-line errors, {counts['skipped']} skipped with a "
          f"reason, {counts['used']} used as they should be; {len(wrong)} misbehaved")
    print(f"slowest case: {max(o.run.seconds for o in outcomes):.1f} s wall, "
          f"{max(o.run.cpu_seconds for o in outcomes):.1f} s CPU (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")
    for label, over in (("wall", slow), ("CPU", slow_cpu)):
        names = ", ".join(o.case.name for o in over[:5]) + (f" and {len(over) - 5} more" if len(over) > 5 else "")
        print(f"{label} time: " + (f"every case under {LIMIT_S:.0f} s" if not over else
                                   f"{len(over)} at {LIMIT_S:.0f} s or more: {names}"))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
