"""Ranking benchmark: the latency each ranker adds per photo at 25 candidates, next to the median's, and the
accuracy of every ranker's pick on the SYNTHETIC benchmark.

Accuracy. The data is the synthetic benchmark of `gaea.location.synthetic` (real MP-16 coordinates, "image
embeddings" from a fixed smooth random field of the position plus noise: no real image weights exist here),
with each test photo's pool from a scripted LMM on 127.0.0.1 answering with known offsets (one answer 15 km
from the truth, five agreeing on a wrong place about 600 km away: `gaea.ranking.synthetic`), the gallery's 4
most similar photos and an s2 model's 3 beam-search places. ``median``, ``g3`` (a geoclip model trained on the
same gallery), ``lmm`` (the tiny random VLM in this process: its replies are never a ranking, so it falls back
to the median, which the table shows) and ``trained`` (the tiny random VLM with LoRA, a scalar head and
the visual match term of `gaea.ranking.trained.PairScorer`, trained with the multi-order loss on the pools of
other test photos). The trained ranker looks at pictures:
each photo, and each gallery photo, is a synthetic "photo" of its embedding
(`gaea.ranking.synthetic.synthetic_photo`), and every candidate comes with the ``--evidence-images`` gallery
photos nearest it, shown as images beside the photo (GeoRanker's evidence: a candidate whose nearby photos
look like the photo is near it, since the field is smooth). The figures are about the rankers' mechanics,
never about accuracy on real photos.

Latency. One real photo (../shared/data/photos/DSCN0010.jpg) and 25 candidates, each ranker timed over
repeated calls (median), tiny models on CPU: what the ranking stage adds per photo on top of gathering the
candidates. ``--device cuda`` runs the VLM rankers on a GPU where one is lent.

Run: ``.venv/bin/python benchmarks/ranking.py`` (quick: about 10 minutes on 2 shared cores); ``--test``,
``--ranker-train`` and ``--ranker-steps`` to change the sizes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository's finetune package, not benchmarks/finetune.py

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from finetune.config import load_config  # noqa: E402
from finetune.location import LocationData, load_train_config, train_location_model  # noqa: E402
from finetune.rank import train_ranker  # noqa: E402
from gaea.location.synthetic import SYNTHETIC_ENCODER, synthetic_benchmark  # noqa: E402
from gaea.models.backends import load_backend  # noqa: E402
from gaea.models.backends.openai_compat import OpenAIBackend  # noqa: E402
from gaea.models.tiny import build_tiny_vlm  # noqa: E402
from gaea.ranking import MedianRanker, ranked  # noqa: E402
from gaea.ranking.g3 import G3Ranker  # noqa: E402
from gaea.ranking.lmm import LMMRanker  # noqa: E402
from gaea.ranking.synthetic import (  # noqa: E402
    PHOTO_SIZE,
    RANKER_TRAINING,
    SyntheticEncoder,
    markdown_table,
    ranking_table,
    scripted_answers,
    synthetic_photo,
    synthetic_pools,
    with_evidence_photos,
    write_ranking_set,
)
from gaea.ranking.trained import TrainedRanker  # noqa: E402
from gaea.retrieval import Retriever  # noqa: E402
from gaea.retrieval.gallery import Gallery  # noqa: E402
from gaea.types import GenerationParams  # noqa: E402
from tests.servers import Reply, scripted_http_server  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
OFFSETS_KM = (15, 600, 605, 610, 615, 620)
MODELS = {
    "geoclip": {"epochs": 3, "batch_size": 256, "learning_rate": 1e-3, "queue_size": 1024,
                "model": {"dim": 64, "image_hidden": 128, "fourier_features": 32, "location_hidden": 128,
                          "location_layers": 2}},
    "s2": {"epochs": 2, "batch_size": 256, "learning_rate": 2e-3, "model": {"hidden": 64, "max_photos": 50}},
}
LATENCY_CANDIDATES = 25
EVIDENCE_IMAGES = 3
#: Side of the synthetic photos (px): the 8 x 8 grid of embedding values at one 14-px patch each.


def completion(content: str) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=12_000, help="gallery / location-model photos (12,000)")
    parser.add_argument("--test", type=int, default=200, help="photos whose picks are scored (200)")
    parser.add_argument("--ranker-train", type=int, default=200, help="photos the trained ranker learns on (200)")
    parser.add_argument("--ranker-steps", type=int, default=300, help="optimizer steps of the trained ranker (300)")
    parser.add_argument("--ranker-lr", type=float, default=RANKER_TRAINING["learning_rate"],
                        help="learning rate of the trained ranker (5e-3)")
    parser.add_argument("--evidence-images", type=int, default=EVIDENCE_IMAGES,
                        help=f"gallery photos near each candidate the trained ranker sees ({EVIDENCE_IMAGES})")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per ranker (10)")
    parser.add_argument("--device", default="cpu", help="device of the VLM rankers (cpu)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vlm = build_tiny_vlm(root / "vlm")
        bench, pools, models = build_pools(args, root)
        ranker_pools, scored_pools = pools[: args.ranker_train], pools[args.ranker_train:]
        trained = train_synthetic_ranker(bench, ranker_pools, vlm, root, args)
        scored = slice(args.ranker_train, None)
        rankers = {"median": MedianRanker(), "g3": G3Ranker(models["geoclip"]),
                   "lmm": LMMRanker(load_backend("transformers", model=str(vlm), device=args.device),
                                    params=GenerationParams(max_new_tokens=32)),
                   "trained": trained}
        chosen = {}
        for name, ranker in rankers.items():
            started = time.perf_counter()
            chosen[name] = [pick(name, ranker, pool, embedding)
                            for pool, embedding in zip(scored_pools, bench.test_embeddings[scored], strict=True)]
            print(f"{name}: ranked {len(scored_pools)} pools in {time.perf_counter() - started:.1f} s", flush=True)
        # Not a ranker: what the trained one would have to learn from the pictures, computed from the embeddings
        # (the cosine of the photo's and each candidate's evidence photos', averaged), as a reference line.
        gallery = np.asarray(models["gallery"].embeddings)
        chosen["evidence cosine (reference)"] = [
            ranked(pool, [np.mean([gallery[int(p.id)] @ embedding for p in c.photos]) for c in pool], "reference")[0]
            for pool, embedding in zip(scored_pools, bench.test_embeddings[scored], strict=True)]
        table = ranking_table(chosen, scored_pools, bench.test_coords[scored])
        print(f"\naccuracy of each ranker's pick, SYNTHETIC benchmark, {len(scored_pools)} photos, "
              f"{np.mean([len(p) for p in scored_pools]):.1f} candidates per pool:\n")
        print(markdown_table(table))
        print(f"\nlatency per photo at {LATENCY_CANDIDATES} candidates (median of {args.repeats} calls):\n")
        print(latency_table(rankers, pools, bench, args.repeats))


def build_pools(args: argparse.Namespace, root: Path) -> tuple[Any, list, dict[str, Any]]:
    """The synthetic benchmark, its location models and gallery, and every test photo's pool."""
    bench = synthetic_benchmark(SHARED / "benchmarks" / "geoclip_coordinates_100K.csv", train=args.train,
                                test=args.test + args.ranker_train)
    data = LocationData(bench.train_embeddings, bench.train_coords, SYNTHETIC_ENCODER, "synthetic")
    models = {kind: train_location_model(load_train_config(None, {**settings, "kind": kind, "out": str(root / kind),
                                                                  "held_out": 0.0}), data, show_progress=False).model
              for kind, settings in MODELS.items()}
    photos = [str(root / "photos" / f"gallery-{row:05d}.png") for row in range(len(bench.train_coords))]
    gallery = Gallery.from_arrays(root / "gallery", bench.train_embeddings, bench.train_coords[:, 0],
                                  bench.train_coords[:, 1], places=[""] * len(bench.train_coords),
                                  sources=photos, encoder=SYNTHETIC_ENCODER)
    retriever = Retriever(gallery, SyntheticEncoder(bench.train_embeddings.shape[1]))
    answers = scripted_answers(bench.test_coords, offsets_km=OFFSETS_KM)
    with scripted_http_server([Reply(200, completion(a)) for photo in answers for a in photo]) as server:
        backend = OpenAIBackend(server.base_url, model="scripted", retries=0)
        pools = synthetic_pools(bench.test_embeddings, answers, backend, retriever, models["s2"],
                                decoding="beam", beam_width=4)
    pools = with_evidence_photos(pools, gallery, args.evidence_images)
    return bench, pools, {**models, "gallery": gallery}


def train_synthetic_ranker(bench: Any, pools: list, vlm: Path, root: Path, args: argparse.Namespace) -> TrainedRanker:
    """The tiny VLM with LoRA and a head, trained on the first pools (`gaea finetune train --task rank`'s code)."""
    data = write_ranking_set(root / "ranking", pools, bench.test_embeddings, bench.test_coords[: len(pools)])
    config = load_config(REPO / "finetune" / "recipes" / "georanker-qwen2.5-vl.yaml", {
        **RANKER_TRAINING, "model_name_or_path": str(vlm), "data": str(data), "output_dir": str(root / "ranker"),
        "learning_rate": args.ranker_lr, "max_steps": args.ranker_steps,
        "rank_evidence_images": args.evidence_images, "rank_photos_per_candidate": args.evidence_images,
    })
    started = time.perf_counter()
    result = train_ranker(config)
    metrics = json.loads((root / "ranker" / "metrics.json").read_text())
    print(f"trained ranker: {result.global_step} steps in {time.perf_counter() - started:.0f} s; held-out "
          f"before {metrics['held_out_before']}, after {metrics['held_out']}", flush=True)
    ranker = TrainedRanker.load(result.final_dir, device=args.device)
    return ranker


def pick(name: str, ranker: Any, pool: list, embedding: np.ndarray) -> Any:
    image = synthetic_photo(embedding, size=PHOTO_SIZE) if name in ("trained", "lmm") else None
    return ranker.rank(image, pool, embedding=embedding)[0]


def latency_table(rankers: dict[str, Any], pools: list, bench: Any, repeats: int) -> str:
    from gaea.images import load_image

    photo = load_image(SHARED / "photos" / "DSCN0010.jpg")
    pool = [c for p in pools for c in p][:LATENCY_CANDIDATES]
    embedding = bench.test_embeddings[0]
    times = {}
    for name, ranker in rankers.items():
        ranker.rank(photo, pool, embedding=embedding)  # warm-up
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            ranker.rank(photo, pool, embedding=embedding)
            samples.append(time.perf_counter() - started)
        times[name] = 1000 * float(np.median(samples))
    lines = ["| ranker | ms per photo | added over median (ms) |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.2f} | {ms - times['median']:+.2f} |" for name, ms in times.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
