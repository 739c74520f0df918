"""The trained ranker (GeoRanker): the multi-order distance loss, `gaea data build-ranking` on the real photos of
../shared/data, `gaea finetune train --task rank` on the tiny random Qwen2.5-VL-family model (no real weights
exist here: the ranker learns what this small set holds, that candidates in Arezzo, where most of its photos
are, are the near ones), saving, loading, and serving it in `gaea locate --ranker trained`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.rank import multi_order_loss, plackett_luce, read_ranking_set
from gaea.cli import main
from gaea.errors import BadInputError

RECIPE = Path(__file__).resolve().parents[1] / "finetune" / "recipes" / "georanker-qwen2.5-vl.yaml"


def test_the_multi_order_loss_on_hand_computed_cases() -> None:
    # Two candidates, equal scores, distances 1 and 2 km: only the first order counts (one pair has no order).
    scores = torch.zeros(2, requires_grad=True)
    loss = multi_order_loss(scores, torch.tensor([1.0, 2.0]))
    assert loss.item() == pytest.approx(math.log(2))  # -log(e^0 / (e^0 + e^0)) - log(1)
    loss.backward()
    assert scores.grad.tolist() == pytest.approx([-0.5, 0.5])  # descent raises the nearer one, lowers the farther
    # The order of the input does not matter, only the distances.
    flipped = torch.zeros(2, requires_grad=True)
    multi_order_loss(flipped, torch.tensor([2.0, 1.0])).backward()
    assert flipped.grad.tolist() == pytest.approx([0.5, -0.5])
    # Three candidates at 0, 1 and 3 km, equal scores: first order log 3 + log 2; second order over the gaps
    # 3 (0-2), 2 (1-2), 1 (0-1), all predicted 0: log 3 + log 2 again, times the weight.
    three = torch.zeros(3)
    distances = torch.tensor([0.0, 1.0, 3.0])
    assert float(multi_order_loss(three, distances, second_order_weight=0.0)) == pytest.approx(math.log(6))
    assert float(multi_order_loss(three, distances, second_order_weight=0.5)) == pytest.approx(1.5 * math.log(6))
    # Scores in the right order cost less than the reverse, in both terms.
    right, wrong = torch.tensor([2.0, 1.0, -1.0]), torch.tensor([-1.0, 1.0, 2.0])
    assert float(multi_order_loss(right, distances)) < float(multi_order_loss(wrong, distances))
    assert float(plackett_luce(torch.tensor([5.0, 0.0]))) < float(plackett_luce(torch.tensor([0.0, 5.0])))


def test_the_second_order_term_orders_score_gaps_by_distance_gaps() -> None:
    """Equal first-order ranking, different spacing: the term prefers score gaps that grow with distance gaps."""
    distances = torch.tensor([0.0, 1.0, 100.0])  # the far one is much farther
    spaced_like_distances = torch.tensor([2.0, 1.9, -2.0])
    evenly_spaced = torch.tensor([2.0, 0.0, -2.0])

    def second(scores: torch.Tensor) -> float:
        return float(multi_order_loss(scores, distances) - multi_order_loss(scores, distances, second_order_weight=0))

    assert second(spaced_like_distances) < second(evenly_spaced)
    scores = evenly_spaced.clone().requires_grad_(True)
    (multi_order_loss(scores, distances) - multi_order_loss(scores, distances, second_order_weight=0)).backward()
    assert scores.grad[1] < 0  # the middle one is pulled up towards the near one


@pytest.fixture(scope="module")
def ranking_set(photos_dir: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ranking-set")
    assert main(["gallery", "build", "--images", str(photos_dir), "--out", str(root / "gallery"),
                 "--encoder", str(tiny_models / "encoder")]) == 0
    assert main(["data", "build-ranking", "--images", str(photos_dir), "--gallery", str(root / "gallery"),
                 "--out", str(root / "ranking")]) == 0
    return root


def test_build_ranking_gives_each_photo_its_pool_with_true_distances(ranking_set: Path) -> None:
    items = read_ranking_set(ranking_set / "ranking")
    assert len(items) == 8  # the geotagged photos
    for item in items:
        assert len(item.candidates) == 7 and all(c.source == "neighbour" for c in item.candidates)
        assert item.image.is_file() and all(p.id != item.image.name for c in item.candidates for p in c.photos)
        # Each candidate's evidence: its own photo, then the gallery photos nearest it, never the photo itself.
        assert all(len(c.photos) == 3 and c.photos[0].source.endswith(f"{c.photos[0].id}") for c in item.candidates)
        for candidate, distance in zip(item.candidates, item.distances_km, strict=True):
            from gaea.geo import haversine_km

            assert distance == pytest.approx(float(haversine_km(candidate.lat, candidate.lon, item.lat, item.lon)))
    assert main(["data", "build-ranking", "--images", str(ranking_set), "--gallery", str(ranking_set / "gallery"),
                 "--out", str(ranking_set / "ranking")]) == 2  # other settings on the same folder: refused
    with pytest.raises(BadInputError, match="not a ranking set"):
        read_ranking_set(ranking_set / "gallery")


def rank_flags(tiny_vlm: Path, ranking_set: Path, out: Path, *more: str) -> list[str]:
    return ["finetune", "train", "--task", "rank", "--config", str(RECIPE), "--model_name_or_path", str(tiny_vlm),
            "--data", str(ranking_set / "ranking"), "--output_dir", str(out), "--torch_dtype", "float32",
            "--bf16", "false", "--gradient_checkpointing", "false", "--max_pixels", "3136",
            "--learning_rate", "1e-3", "--eval_ratio", "0.25", "--train_merger", "true",
            "--lora_r", "8", "--lora_alpha", "16", "--logging_steps", "1", "--rank_evidence_images", "0", *more]


@pytest.fixture(scope="module")
def trained_ranker(ranking_set: Path, tiny_vlm: Path) -> Path:
    out = ranking_set / "ranker"
    torch.set_num_threads(1)
    assert main(rank_flags(tiny_vlm, ranking_set, out, "--num_train_epochs", "5", "--save_steps", "15",
                           "--report_to", "tensorboard")) == 0
    return out


def test_the_trained_ranker_learns_and_ranks_held_out_photos_above_chance(trained_ranker: Path) -> None:
    """No real weights: the tiny model is random; the ranker learns the set's signal (see the module)."""
    metrics = json.loads((trained_ranker / "metrics.json").read_text())
    losses = metrics["losses"]
    quarter = len(losses) // 4
    assert np.mean(losses[-quarter:]) < 0.85 * np.mean(losses[:quarter]), losses
    before, after = metrics["held_out_before"], metrics["held_out"]
    print(f"held out: before {before}, after {after}")
    assert after["photos"] == 2 and after["pairs"] > 0
    assert after["pair_accuracy"] > 0.6 and after["pair_accuracy"] > before["pair_accuracy"]
    assert after["top1_nearest"] > after["top1_chance"]
    assert after["loss"] < before["loss"]
    assert metrics["steps"] == 30 and len(losses) == 30  # 5 epochs of the 6 training photos, one a step
    assert {p.name for p in trained_ranker.glob("checkpoint-*")} == {"checkpoint-15", "checkpoint-30"}
    assert (trained_ranker / "checkpoint-15" / "head.safetensors").is_file()
    assert list(trained_ranker.glob("runs/*/events.out.tfevents.*")), "no TensorBoard log"


def test_a_resumed_ranker_run_ends_where_an_uninterrupted_one_does(ranking_set: Path, tiny_vlm: Path) -> None:
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from finetune.config import load_config
    from finetune.train import main as train

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 2

    short = ("--max_steps", "4", "--save_steps", "2", "--report_to", "none", "--lora_dropout", "0.1")
    straight, resumed = ranking_set / "straight", ranking_set / "resumed"
    assert main(rank_flags(tiny_vlm, ranking_set, straight, *short)) == 0
    flags = rank_flags(tiny_vlm, ranking_set, resumed, *short)
    pairs = zip(flags[2::2], flags[3::2], strict=True)  # after `finetune train`: --task rank, --config ...
    overrides = {name.removeprefix("--"): value for name, value in pairs if name != "--config"}
    stopped = train(load_config(RECIPE, overrides), callbacks=[StopAt()])
    assert stopped.global_step == 2 and not (resumed / "checkpoint-4").exists()
    assert main([*flags, "--resume_from_checkpoint", "last"]) == 0
    assert json.loads((resumed / "metrics.json").read_text())["steps"] == 4

    def weights(run: Path, folder: str = "final") -> dict[str, torch.Tensor]:
        return load_file(str(run / folder / "head.safetensors")) | load_file(
            str(run / folder / "adapter" / "adapter_model.safetensors"))

    expected, got, halfway = weights(straight), weights(resumed), weights(resumed, "checkpoint-2")
    assert expected.keys() == got.keys() and len(expected) > 2
    for key in expected:
        assert torch.allclose(expected[key], got[key], atol=1e-6), key
    assert any(not torch.allclose(expected[key], halfway[key]) for key in expected)  # the second half did train


def test_the_trained_ranker_saves_loads_and_serves(trained_ranker: Path, ranking_set: Path, photos_dir: Path,
                                                   capsys) -> None:
    from gaea.ranking.trained import TrainedRanker, pair_inputs

    final = trained_ranker / "final"
    assert {p.name for p in final.iterdir()} >= {"ranker.json", "head.safetensors", "adapter"}
    ranker = TrainedRanker.load(final)
    item = read_ranking_set(ranking_set / "ranking")[0]
    # This set's signal is in the text (see the module): trained on it, the ranker saw no candidate photo, and
    # serves the same way; with evidence_images, each candidate's gallery photo follows the photo as an image.
    assert json.loads((final / "ranker.json").read_text())["evidence_images"] == ranker.evidence_images == 0
    assert all(Path(c.photos[0].source).is_file() for c in item.candidates)
    for shown in (0, 1):
        inputs = pair_inputs(ranker.processor, item.image, item.candidates[:3], photos_per_candidate=3,
                             evidence_images_count=shown)
        assert len(inputs["image_grid_thw"]) == (1 + shown) * 3
    ranking = ranker.rank(item.image, item.candidates)
    assert ranking.ranker == "trained" and len(ranking) == len(item.candidates)
    scores = [c.rank_score for c in ranking]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    again = TrainedRanker.load(final).rank(item.image, item.candidates)
    assert [c.rank_score for c in again] == pytest.approx(scores, abs=1e-5)  # loading is deterministic

    photo = photos_dir / "DSCN0010.jpg"
    assert main(["locate", "--base-url", "http://127.0.0.1:9/v1", "--served-model", "unused", "--gallery",
                 str(ranking_set / "gallery"), "--k-similar", "4", "--candidates", "neighbours", "--ranker", "trained",
                 "--ranker-model", str(final), "--json", str(photo)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["ranker"] == "trained" and len(record["candidates"]) >= 1
    assert [c["rank_score"] for c in record["candidates"]] == sorted([c["rank_score"] for c in record["candidates"]],
                                                                     reverse=True)
    with pytest.raises(BadInputError, match="not a trained ranker"):
        TrainedRanker.load(ranking_set / "gallery")
