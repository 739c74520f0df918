"""Latency of one chat turn through the Gradio app against the same turn in-process.

Both sides run the same `gaea.Assistant` on the same tiny offline model with the same photo, question and
token budget, in one run, turns interleaved so that machine load drifts hit both alike:

- direct: `Assistant.chat([], image, question)` in this process (the image decoded from the file first);
- app: `gradio_client` against `gaea ui` running as its own process, as a person's browser talks to it
  (upload, queue, validation, streaming, JSON), each turn a new conversation about the photo.

The app's overhead should stay under 10% of a turn. Run: `.venv/bin/python benchmarks/serving.py [--turns N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Both sides run torch in their own process; the idle one's OpenMP threads must not spin on the two cores that
# the measured one needs (set before torch loads, and inherited by the app's process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import PHOTO, QUESTION  # noqa: E402
from gaea.images import load_image  # noqa: E402
from gaea.models.backends import load_backend  # noqa: E402
from gaea.models.serving import ServerProcess, free_port  # noqa: E402
from gaea.models.tiny import build_tiny_vlm  # noqa: E402
from gaea.types import GenerationParams  # noqa: E402

TARGET_OVERHEAD = 0.10


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def direct_turn(assistant, photo: Path) -> tuple[float, str]:
    start = time.perf_counter()
    answer = "".join(assistant.chat([], load_image(photo), QUESTION))
    return time.perf_counter() - start, answer


def app_turn(client, photo: Path) -> tuple[float, str]:
    from gradio_client import handle_file

    start = time.perf_counter()
    _textbox, chat = client.predict({"text": QUESTION, "files": [handle_file(str(photo))]}, api_name="/chat")[:2]
    elapsed = time.perf_counter() - start
    content = chat[-1]["content"]
    text = "".join(part.get("text", "") for part in content) if isinstance(content, list) else str(content)
    return elapsed, text


@contextlib.contextmanager
def running_app(model: Path, port: int, max_new_tokens: int, log_path: Path) -> Iterator[None]:
    """`gaea ui` for `model` on 127.0.0.1:`port` in its own process group, until the block ends."""
    command = [sys.executable, "-m", "gaea.cli", "ui", "--model", str(model), "--device", "cpu",
               "--max-new-tokens", str(max_new_tokens), "--port", str(port)]
    app = ServerProcess(command, f"http://127.0.0.1:{port}", "/", log_path=log_path,
                        env={"PYTHONPATH": str(REPO_ROOT)})
    try:
        app.start()
        app.wait_until_ready(timeout_s=300)
        yield
    finally:
        app.stop(grace_s=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20, help="timed turns on each side (default: %(default)s)")
    parser.add_argument(
        "--max-new-tokens", type=int, nargs="+", default=[32, 2048],
        help="token budgets per answer, one measurement each (default: 32 2048: a short answer, where the app's "
        "fixed cost per turn shows, and one about as long in time as a real model's answer on a GPU)",
    )
    args = parser.parse_args()
    if not PHOTO.is_file():
        sys.exit(f"benchmark photo not found: {PHOTO} (expected ../shared/data beside the repository)")
    with tempfile.TemporaryDirectory(prefix="gaea-bench-serving-") as tmp:
        model = build_tiny_vlm(Path(tmp) / "vlm")
        for budget in args.max_new_tokens:
            direct, through_app = measure(model, budget, args.turns, Path(tmp) / f"ui-{budget}.log")
            report(direct, through_app, budget, args.turns)
    return 0


def measure(model: Path, max_new_tokens: int, turns: int, log_path: Path) -> tuple[list[float], list[float]]:
    """Seconds per turn (direct, through the app) for `turns` turns on each side."""
    from gradio_client import Client

    from gaea import Assistant

    backend = load_backend("transformers", model=str(model), device="cpu")
    assistant = Assistant(backend, params=GenerationParams(max_new_tokens=max_new_tokens))
    port = free_port()
    with running_app(model, port, max_new_tokens, log_path):
        # Plain HTTP on loopback: no TLS context to build per request, and no copying back of the photo
        # the chat shows, which a browser would not download again either.
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False, ssl_verify=False)
        sides = {"direct": lambda: direct_turn(assistant, PHOTO), "app": lambda: app_turn(client, PHOTO)}
        sides["direct"](), sides["app"]()  # warm-up: first-call costs are not latency
        seconds: dict[str, list[float]] = {"direct": [], "app": []}
        for turn in range(turns):
            # alternate which side goes first, so neither always runs right after the other
            answers = {}
            for side in ("direct", "app") if turn % 2 == 0 else ("app", "direct"):
                elapsed, answers[side] = sides[side]()
                seconds[side].append(elapsed)
            if answers["app"].strip() != answers["direct"].strip():
                print(f"note: answers differ (app {answers['app'][:40]!r}, direct {answers['direct'][:40]!r})")
    return seconds["direct"], seconds["app"]


def report(direct: list[float], through_app: list[float], max_new_tokens: int, turns: int) -> None:
    rows = [("direct (Assistant.chat in-process)", direct), ("app (gradio_client -> gaea ui)", through_app)]
    print(f"chat turn latency, tiny model, {max_new_tokens} new tokens max, {turns} turns each")
    for label, values in rows:
        print(
            f"  {label:36s} p50 {percentile(values, 50) * 1000:8.1f} ms   p95 {percentile(values, 95) * 1000:8.1f} ms"
            f"   mean {statistics.fmean(values) * 1000:8.1f} ms"
        )
    ratio_p50 = percentile(through_app, 50) / percentile(direct, 50)
    ratio_p95 = percentile(through_app, 95) / percentile(direct, 95)
    overhead_ms = (percentile(through_app, 50) - percentile(direct, 50)) * 1000
    verdict = "within" if ratio_p50 - 1 < TARGET_OVERHEAD else "OVER"
    print(f"  ratio app/direct: p50 {ratio_p50:.3f}, p95 {ratio_p95:.3f}; overhead at p50 {overhead_ms:.1f} ms "
          f"({(ratio_p50 - 1) * 100:+.1f}%, {verdict} the {TARGET_OVERHEAD:.0%} target)")


if __name__ == "__main__":
    sys.exit(main())
