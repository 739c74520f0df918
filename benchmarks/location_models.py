"""Location models benchmark: training speed, prediction latency and accuracy of every kind, next to a
kNN-over-the-gallery baseline (the nearest training embedding's place, exact FAISS search) measured in the
same run.

The data is the SYNTHETIC benchmark of `gaea.location.synthetic`: the real 100k MP-16 coordinates of
GeoCLIP's gallery, each with an "image embedding" from a fixed smooth random function of its position plus
noise (no real image weights exist here). Train on the first rows of a seeded shuffle, test on the last
ones: ``--full`` is the 80,000 / 20,000 split; the quick default 20,000 / 5,000. Its accuracies are about
the models' mechanics on a spatially realistic signal, never about accuracy on real photos.

Per model: training examples per second (photos x epochs / wall time, semivariogram fit included; for kNN,
photos indexed per second), prediction latency per image at batch 1 (median of single calls) and at batch
256, and accuracy at 1 / 25 / 200 / 750 / 2,500 km, median error and GeoScore of the top candidate, with the
best trivial predictor (medoid, densest S2 cell) for reference. Single-threaded (torch, FAISS, BLAS) so
every model gets the same CPU; ``--threads`` to change. ``--device cuda`` where a GPU is lent.

Run: ``.venv/bin/python benchmarks/location_models.py`` (quick: about 15 minutes on 2 shared cores);
``--full`` (80k / 20k, about an hour); ``--kinds geoclip,s2`` for a subset.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository's finetune package, not benchmarks/finetune.py

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from finetune.location import LocationData, load_train_config, train_location_model  # noqa: E402
from gaea.geo.distance import THRESHOLDS_KM, accuracy_at, haversine_km, threshold_key  # noqa: E402
from gaea.location import evaluate_predictions  # noqa: E402
from gaea.location.evaluate import points_summary  # noqa: E402
from gaea.location.synthetic import SYNTHETIC_ENCODER, synthetic_benchmark, trivial_predictions  # noqa: E402
from gaea.retrieval.index import VectorIndex  # noqa: E402

COORDINATES = REPO.parent / "shared" / "data" / "benchmarks" / "geoclip_coordinates_100K.csv"

#: name -> (training settings, decoding options): sized for a CPU.
MODELS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "geoclip": ({"kind": "geoclip", "learning_rate": 1e-3, "queue_size": 2048,
                 "model": {"dim": 256, "image_hidden": 512, "fourier_features": 128, "location_hidden": 512,
                           "location_layers": 2}}, {}),
    "geoclip + semivariogram negatives": ({"kind": "geoclip", "negatives": "semivariogram", "learning_rate": 1e-3,
                                           "queue_size": 2048,
                                           "model": {"dim": 256, "image_hidden": 512, "fourier_features": 128,
                                                     "location_hidden": 512, "location_layers": 2}}, {}),
    "s2 beam (width 4)": ({"kind": "s2", "learning_rate": 2e-3, "model": {"hidden": 256, "max_photos": 50}},
                          {"decoding": "beam", "beam_width": 4}),
    "shdd regression (L = 48)": ({"kind": "shdd", "learning_rate": 1e-3,
                                  "model": {"hidden": 256, "degree": 48, "variant": "regression"}}, {}),
    "shdd diffusion (L = 48)": ({"kind": "shdd", "learning_rate": 1e-3,
                                 "model": {"hidden": 256, "degree": 48, "variant": "diffusion"}},
                                {"samples": 4, "steps": 10}),
}
#: Other decodings of an already trained model: name -> (model it decodes, options).
DECODINGS = {
    "s2 greedy": ("s2 beam (width 4)", {"decoding": "greedy"}),
    "s2 multi-sample (16)": ("s2 beam (width 4)", {"decoding": "sample", "samples": 16}),
    "shdd diffusion from the noised prior (start 0.1)": ("shdd diffusion (L = 48)", {"samples": 1, "start": 0.1}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="train on 80,000 photos, test on 20,000")
    parser.add_argument("--train", type=int, help="training photos (20,000; --full 80,000)")
    parser.add_argument("--test", type=int, help="test photos (5,000; --full 20,000)")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training photos (3)")
    parser.add_argument("--kinds", default="geoclip,s2,shdd", help="kinds to run, comma-separated")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_count = args.train or (80_000 if args.full else 20_000)
    test_count = args.test or (20_000 if args.full else 5_000)
    kinds = {kind.strip() for kind in args.kinds.split(",")}

    bench = synthetic_benchmark(COORDINATES, train=train_count, test=test_count)
    print(f"synthetic benchmark: {train_count:,} training photos, {test_count:,} test photos, "
          f"{bench.train_embeddings.shape[1]}-dimensional embeddings, {args.epochs} epochs, device {args.device}, "
          f"{args.threads} thread(s)")
    rows = [trivial_row(bench), knn_row(bench)]
    print_row(rows[0])
    print_row(rows[1])
    trained = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (settings, options) in MODELS.items():
            if settings["kind"] not in kinds:
                continue
            row, trained[name] = model_row(name, settings, options, bench, Path(scratch) / str(len(trained)), args)
            rows.append(row)
            print_row(row)
        for name, (source, options) in DECODINGS.items():
            if source in trained:
                row = decoding_row(name, trained[source], options, bench)
                rows.append(row)
                print_row(row)
    print()
    print(markdown_table(rows))
    if args.out:
        args.out.write_text(json.dumps({"train": train_count, "test": test_count, "epochs": args.epochs,
                                        "rows": rows}, indent=2) + "\n")


def trivial_row(bench: Any) -> dict[str, Any]:
    best = {threshold_key(t): 0.0 for t in THRESHOLDS_KM}
    for lat, lon in trivial_predictions(bench.train_coords).values():
        distances = haversine_km(bench.test_coords[:, 0], bench.test_coords[:, 1], lat, lon)
        best = {key: max(best[key], value) for key, value in accuracy_at(distances).items()}
    return {"model": "best trivial predictor (medoid / densest S2 cell, per threshold)", "accuracy": best,
            "median_km": None, "geoscore": None}


def knn_row(bench: Any) -> dict[str, Any]:
    """The baseline: exact nearest training embedding (FAISS inner product), its photo's place."""
    started = time.perf_counter()
    index = VectorIndex.build(bench.train_embeddings, kind="flat")
    build_s = time.perf_counter() - started
    coords = bench.train_coords

    def predict(queries: np.ndarray) -> np.ndarray:
        _, rows = index.search(queries, 1)
        return coords[rows[:, 0]]

    points = predict(bench.test_embeddings)
    return {"model": "kNN over the gallery (baseline)", **points_summary(points[:, 0], points[:, 1], bench.test_coords),
            "train_examples_per_s": len(coords) / build_s, **latencies(predict, bench.test_embeddings)}


def model_row(name: str, settings: dict[str, Any], options: dict[str, Any], bench: Any, out: Path,
              args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    config = load_train_config(None, {**settings, "out": str(out), "epochs": args.epochs, "held_out": 0.0,
                                      "batch_size": 256, "checkpoint_every": 10_000, "device": args.device})
    data = LocationData(bench.train_embeddings, bench.train_coords, SYNTHETIC_ENCODER, "synthetic benchmark")
    started = time.perf_counter()
    result = train_location_model(config, data, show_progress=False)
    train_s = time.perf_counter() - started
    model = result.model

    def predict(queries: np.ndarray) -> np.ndarray:
        return model.predict_arrays(queries, 1, batch_size=256, **options)

    row = {"model": name, **evaluate_predictions(model, bench.test_embeddings, bench.test_coords, **options),
           "train_examples_per_s": len(bench.train_embeddings) * args.epochs / train_s,
           **latencies(predict, bench.test_embeddings)}
    return row, model


def decoding_row(name: str, model: Any, options: dict[str, Any], bench: Any) -> dict[str, Any]:
    def predict(queries: np.ndarray) -> np.ndarray:
        return model.predict_arrays(queries, 1, batch_size=256, **options)

    return {"model": name, **evaluate_predictions(model, bench.test_embeddings, bench.test_coords, **options),
            "train_examples_per_s": None, **latencies(predict, bench.test_embeddings)}


def latencies(predict: Any, queries: np.ndarray, *, singles: int = 100, batches: int = 4) -> dict[str, float]:
    """Milliseconds per image: median of single-image calls, and mean over calls of 256 images."""
    single = []
    for row in range(singles):
        started = time.perf_counter()
        predict(queries[row:row + 1])
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    for batch in range(batches):
        predict(queries[batch * 256:(batch + 1) * 256])
    return {"ms_per_image_batch_1": 1000 * float(np.median(single)),
            "ms_per_image_batch_256": 1000 * (time.perf_counter() - started) / (batches * 256)}


def print_row(row: dict[str, Any]) -> None:
    accuracy = " / ".join(f"{value:5.1f}" for value in row["accuracy"].values())
    speed = "" if row.get("train_examples_per_s") is None else f" | {row['train_examples_per_s']:,.0f} ex/s"
    latency = "" if "ms_per_image_batch_1" not in row else (
        f" | {row['ms_per_image_batch_1']:.2f} / {row['ms_per_image_batch_256']:.3f} ms per image (batch 1 / 256)")
    print(f"{row['model']}: {accuracy} %{speed}{latency}", flush=True)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ("| model | acc @ 1 / 25 / 200 / 750 / 2,500 km (%) | median km | GeoScore | training ex/s | "
              "ms per image, batch 1 | batch 256 |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        accuracy = " / ".join(f"{value:.1f}" for value in row["accuracy"].values())
        median = "" if row.get("median_km") is None else f"{row['median_km']:,.0f}"
        score = "" if row.get("geoscore") is None else f"{row['geoscore']:,.0f}"
        speed = "" if row.get("train_examples_per_s") is None else f"{row['train_examples_per_s']:,.0f}"
        single = f"{row['ms_per_image_batch_1']:.2f}" if "ms_per_image_batch_1" in row else ""
        batch = f"{row['ms_per_image_batch_256']:.3f}" if "ms_per_image_batch_256" in row else ""
        lines.append(f"| {row['model']} | {accuracy} | {median} | {score} | {speed} | {single} | {batch} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
