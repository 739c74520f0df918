"""Throughput of `gaea eval bench` against a hosted-API-like endpoint.

A small OpenAI-compatible server (a threaded http.server in a child process, on 127.0.0.1) answers every
chat completion after a fixed 100 ms, standing in for a hosted API. The benchmark runs the real eval path
(data items with a photo -> gaea.Assistant.ask -> OpenAIBackend streaming over HTTP -> judge-free
scoring -> samples.jsonl appended per batch of finished items) on 4,000 MCQ / TF questions with
concurrency 32, and a one-request-at-a-time baseline on a 200-question subset, extrapolated to 4,000
(said so in the output). Targets: the concurrent run takes at
most 1.25x the ideal 4000 x 0.1 s / 32 = 12.5 s, and is at least 25x faster than the baseline.

Run: .venv/bin/python benchmarks/eval_throughput.py [--questions 4000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.bench import make_worker  # noqa: E402
from eval.data import BenchItem  # noqa: E402
from eval.judge_free import JudgeFreeScorer  # noqa: E402
from eval.runner import run_resumable  # noqa: E402
from gaea.assistant import Assistant  # noqa: E402
from gaea.models.backends import load_backend  # noqa: E402
from gaea.records import QARecord  # noqa: E402
from gaea.types import GenerationParams  # noqa: E402

LATENCY_S = 0.1
BASELINE_QUESTIONS = 200


class _SlowCompletions(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as hosted APIs allow

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        time.sleep(LATENCY_S)
        last = body["messages"][-1]["content"]
        text = next(part["text"] for part in last if part.get("type") == "text") if isinstance(last, list) else last
        reply = "B" if "Answer with the letter" in text else "Yes"
        if body.get("stream"):
            chunk = {"id": "x", "object": "chat.completion.chunk", "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": reply}, "finish_reason": None}]}
            payload = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            content_type = "text/event-stream"
        else:
            payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                               "finish_reason": "stop"}]}).encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(port_queue: multiprocessing.Queue) -> None:
    server = _SlowCompletions(("127.0.0.1", 0), _Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _items(count: int, image: Path) -> list[BenchItem]:
    items = []
    for index in range(count):
        if index % 2:
            record = QARecord(id=f"q{index}", image=image.name, question=f"Is landmark {index} in Italy?",
                              answer="Yes", question_type="TF")
        else:
            record = QARecord(id=f"q{index}", image=image.name, question=f"Which is nearest to landmark {index}?",
                              answer="B", question_type="MCQ", options=["harbour", "cathedral", "airport", "stadium"])
        items.append(BenchItem(record, image))
    return items


def _timed_run(items: list[BenchItem], base_url: str, out: Path, concurrency: int) -> tuple[float, list[dict]]:
    backend = load_backend("openai", base_url=base_url, model="bench", retries=2)
    assistant = Assistant(backend, params=GenerationParams(max_new_tokens=8))
    worker = make_worker(assistant, JudgeFreeScorer())
    start = time.perf_counter()
    samples = run_resumable(items, worker, samples_path=out, concurrency=concurrency, desc=f"concurrency {concurrency}")
    return time.perf_counter() - start, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    port_queue: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(port_queue,), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port_queue.get(timeout=30)}/v1"
    try:
        with tempfile.TemporaryDirectory(prefix="gaea-eval-bench-") as tmp:
            tmp_path = Path(tmp)
            image = tmp_path / "photo.jpg"
            Image.new("RGB", (64, 48), (90, 140, 200)).save(image)
            items = _items(args.questions, image)

            sequential_s, _ = _timed_run(items[:BASELINE_QUESTIONS], base_url, tmp_path / "seq.jsonl", 1)
            concurrent_s, samples = _timed_run(items, base_url, tmp_path / "conc.jsonl", args.concurrency)
    finally:
        server.terminate()
        server.join(timeout=10)

    assert len(samples) == args.questions and all(sample["score"] == 10.0 for sample in samples)
    ideal_s = args.questions * LATENCY_S / args.concurrency
    sequential_total_s = sequential_s * args.questions / BASELINE_QUESTIONS
    speedup = sequential_total_s / concurrent_s
    print(f"questions: {args.questions}, server latency {LATENCY_S * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"concurrent run:        {concurrent_s:7.2f} s  ({args.questions / concurrent_s:.0f} questions/s)")
    print(f"ideal:                 {ideal_s:7.2f} s  -> {concurrent_s / ideal_s:.3f}x the ideal (target <= 1.25x)")
    print(f"sequential baseline:   {sequential_s:7.2f} s for {BASELINE_QUESTIONS} questions, "
          f"extrapolated to {args.questions}: {sequential_total_s:.1f} s")
    print(f"speed-up over one request at a time: {speedup:.1f}x (target >= 25x)")
    ok = concurrent_s <= 1.25 * ideal_s and speedup >= 25
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
