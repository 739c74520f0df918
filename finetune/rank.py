"""Training GeoRanker's ranker (`gaea finetune train --task rank`): a vision-language model with LoRA and a
scalar head (`gaea.ranking.trained.PairScorer`) scoring (photo, candidate evidence) pairs, trained on a ranking
set made by `gaea data build-ranking` with the multi-order distance loss.

The loss of one photo with candidates at distances d_1 < d_2 < ... < d_n from the truth (`multi_order_loss`):

- first order: the Plackett-Luce likelihood of the candidates' order by distance, nearest first, under the
  scores s: ``-sum_i log(exp(s_i) / sum_{j >= i} exp(s_j))``, so a nearer candidate must score higher;
- second order: the same likelihood for the pairs (i < j), ordered by their distance gap d_j - d_i (largest
  first), under the score gaps s_i - s_j, so the score gap grows with the distance gap;
- total: first + ``rank_second_order_weight`` x second.

Each sample is one photo with up to ``rank_candidates`` of its candidates. The run is the fine-tuning
Trainer's (`RankTrainer`), so it checkpoints every ``save_steps`` into ``output_dir/checkpoint-N/`` (the ranker's
adapter and head, optimizer, schedule, random state), resumes from one with ``resume_from_checkpoint`` (a folder
or ``last``) exactly where an uninterrupted run would be, and logs to ``report_to`` (TensorBoard:
``output_dir/runs/``). It writes ``final/`` (the ranker: `gaea.ranking.trained.TrainedRanker.load`),
``metrics.json`` (the logged losses, held-out ranking accuracy against chance) and ``finetune_config.yaml``.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from finetune.config import FinetuneConfig
from finetune.train import GaeaTrainer
from gaea.errors import BadInputError, ConfigError
from gaea.io import atomic_write_json, atomic_write_text, read_jsonl
from gaea.types import Candidate, Neighbor

log = logging.getLogger(__name__)

RANKING_FILE = "ranking.jsonl"


# -- the loss ------------------------------------------------------------------------------------------


def plackett_luce(scores: torch.Tensor) -> torch.Tensor:
    """Minus the log-likelihood of the order of ``scores`` as given (best first) under Plackett-Luce."""
    tail = torch.logcumsumexp(scores.flip(0), dim=0).flip(0)  # log sum_{j >= i} exp(s_j)
    return (tail - scores).sum()


def multi_order_loss(scores: torch.Tensor, distances: torch.Tensor, *,
                     second_order_weight: float = 1.0) -> torch.Tensor:
    """GeoRanker's multi-order distance loss of one photo's candidates (see the module docstring)."""
    order = torch.argsort(distances, stable=True)
    s, d = scores[order], distances[order].to(scores.dtype)
    first = plackett_luce(s)
    if second_order_weight == 0 or len(s) < 3:
        return first
    i, j = torch.triu_indices(len(s), len(s), offset=1, device=s.device)
    by_gap = torch.argsort(d[j] - d[i], descending=True, stable=True)
    return first + second_order_weight * plackett_luce((s[i] - s[j])[by_gap])


# -- the ranking set -----------------------------------------------------------------------------------


@dataclass
class RankingItem:
    """One photo of a ranking set: its file, true place, and candidate pool with each one's distance (km)."""

    id: str
    image: Path
    lat: float
    lon: float
    candidates: list[Candidate]
    distances_km: list[float]


def read_ranking_set(path: str | Path) -> list[RankingItem]:
    """The photos of a `gaea data build-ranking` folder (or its ranking.jsonl).

    Raises
    ------
    BadInputError
        When the file is missing, or a row lacks its photo, place or candidates.
    """
    path = Path(path)
    file = path / RANKING_FILE if path.is_dir() else path
    if not file.is_file():
        raise BadInputError(f"{path}: not a ranking set (no {RANKING_FILE}; make one with `gaea data build-ranking`)")
    items = []
    for line, row in enumerate(read_jsonl(file), start=1):
        try:
            candidates = [_candidate(c) for c in row["candidates"]]
            items.append(RankingItem(str(row["id"]), Path(row["image"]), float(row["lat"]), float(row["lon"]),
                                     candidates, [float(c["distance_km"]) for c in row["candidates"]]))
        except (KeyError, TypeError, ValueError) as error:
            raise BadInputError(f"{file}:{line}: not a ranking row ({error!r})") from error
    if not items:
        raise BadInputError(f"{file}: the ranking set has no photos")
    return items


def _candidate(row: dict[str, Any]) -> Candidate:
    photos = tuple(Neighbor(**photo) for photo in row.get("photos", ()))
    return Candidate(float(row["lat"]), float(row["lon"]), float(row.get("score", 0.0)), str(row.get("source", "")),
                     str(row.get("place", "")), str(row.get("reasoning", "")), photos)


def split_items(items: list[RankingItem], eval_ratio: float, seed: int) -> tuple[list[RankingItem], list[RankingItem]]:
    """Train and held-out photos, the same for the same seed (at least one held out when the ratio is positive)."""
    if eval_ratio <= 0:
        return items, []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(items) * eval_ratio))
    if n_eval >= len(items):
        raise BadInputError(f"eval_ratio {eval_ratio} leaves no training photo out of {len(items)}")
    return [items[i] for i in sorted(order[n_eval:])], [items[i] for i in sorted(order[:n_eval])]


# -- training ------------------------------------------------------------------------------------------


def check_rank_config(config: FinetuneConfig) -> None:
    """What --task rank needs from the shared fine-tuning settings."""
    if not config.use_lora:
        raise ConfigError("--task rank trains a LoRA adapter and a scalar head: set use_lora true")
    if config.rank_candidates < 2:
        raise ConfigError(f"rank_candidates {config.rank_candidates}: ranking needs at least 2 candidates per photo")


class RankTrainer(GaeaTrainer):
    """The fine-tuning Trainer (its optimizer groups, schedule, checkpoints, resumption and loggers) on ranking
    photos: each sample is one photo's index, its loss the multi-order loss of its candidates' scores, and a
    checkpoint (like ``final/``) holds the ranker's adapter and head rather than the whole model."""

    def __init__(self, *args: Any, items: list[RankingItem], config: FinetuneConfig, settings: dict[str, Any],
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.items, self.rank_config, self.settings = items, config, settings

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        losses = []
        for index in inputs["index"].tolist():
            scores, distances = item_scores(model, self.processing_class, self.items[index], self.rank_config)
            losses.append(multi_order_loss(scores, distances,
                                           second_order_weight=self.rank_config.rank_second_order_weight))
        loss = torch.stack(losses).mean()
        return (loss, None) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        from gaea.ranking.trained import save_ranker

        save_ranker(self.model, self.processing_class, self.settings, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        from gaea.ranking.trained import load_weights

        load_weights(model or self.model, resume_from_checkpoint)


def train_ranker(config: FinetuneConfig, *, callbacks: list[Any] | None = None) -> Any:
    """Train as `config` says (``task: rank``), resuming from ``resume_from_checkpoint``; returns a
    `finetune.train.TrainResult`."""
    from finetune.model import load_base_model, load_processor, prepare_model
    from finetune.train import FINAL_DIR, TrainResult, resolve_checkpoint, training_arguments
    from gaea.ranking.trained import PairScorer
    from gaea.runs import RunLock

    check_rank_config(config)
    train_items, eval_items = split_items(read_ranking_set(config.data), config.eval_ratio, config.seed)
    if config.eval_data:
        eval_items = read_ranking_set(config.eval_data)
    train_items = [item for item in train_items if len(set(item.distances_km)) > 1][: config.max_samples]
    if not train_items:
        raise BadInputError(f"{config.data}: no photo has two candidates at different distances to rank")
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(output_dir):
        torch.manual_seed(config.seed)
        processor = load_processor(config)
        scorer = PairScorer(prepare_model(load_base_model(config), config))
        scorer.head.float()
        atomic_write_text(output_dir / "finetune_config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        settings = {"base_model": config.model_name_or_path, "min_pixels": config.min_pixels,
                    "max_pixels": config.max_pixels, "photos_per_candidate": config.rank_photos_per_candidate,
                    "evidence_images": config.rank_evidence_images}
        trainer = RankTrainer(model=scorer, args=training_arguments(config, has_eval=False),
                              train_dataset=list(range(len(train_items))), data_collator=_indices,
                              processing_class=processor, callbacks=callbacks, items=train_items, config=config,
                              settings=settings,
                              merger_learning_rate=config.merger_learning_rate if config.train_merger else None)
        before = evaluate_ranker(scorer, processor, eval_items, config) if eval_items else None
        trainer.train(resume_from_checkpoint=resolve_checkpoint(config))
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        metrics = {"steps": trainer.state.global_step, "losses": losses, "held_out_before": before,
                   "held_out": evaluate_ranker(scorer, processor, eval_items, config) if eval_items else None,
                   "train_photos": len(train_items), "held_out_photos": len(eval_items)}
        final_dir = output_dir / FINAL_DIR
        trainer.save_model(str(final_dir))
        atomic_write_json(output_dir / "metrics.json", metrics)
    held = metrics["held_out"]
    log.info("saved the ranker to %s; held-out %s", final_dir, json.dumps(held))
    window = max(1, len(losses) // 4)
    return TrainResult(output_dir=output_dir, final_dir=final_dir, global_step=trainer.state.global_step,
                       train_loss=float(np.mean(losses[-window:])) if losses else float("nan"),
                       eval_loss=held["loss"] if held else None, log_history=list(trainer.state.log_history))


def _indices(batch: list[int]) -> dict[str, torch.Tensor]:
    """The batch of photo indices `RankTrainer.compute_loss` reads (the photos load there, candidate by
    candidate)."""
    return {"index": torch.tensor(batch)}


def item_scores(scorer: torch.nn.Module, processor: Any, item: RankingItem,
                config: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The scores of one photo's first ``rank_candidates`` candidates, and their distances (km)."""
    from gaea.images import load_image
    from gaea.ranking.trained import pair_inputs

    candidates, distances = item.candidates[: config.rank_candidates], item.distances_km[: config.rank_candidates]
    inputs = pair_inputs(processor, load_image(item.image), candidates,
                         photos_per_candidate=config.rank_photos_per_candidate,
                         evidence_images_count=config.rank_evidence_images)
    scores = scorer(**{key: value.to(scorer.head.weight.device) for key, value in inputs.items()})
    return scores.float(), torch.tensor(distances)


def evaluate_ranker(scorer: torch.nn.Module, processor: Any, items: list[RankingItem],
                    config: FinetuneConfig) -> dict[str, float]:
    """Held-out ranking quality: the loss, the share of candidate pairs (at different distances) ordered
    right (chance 0.5), and how often the top-scored candidate is the nearest (against picking at random)."""
    was_training = scorer.training
    scorer.eval()
    losses, right, pairs, top, chance = [], 0, 0, 0.0, 0.0
    with torch.no_grad():
        for item in items:
            scores, d = item_scores(scorer, processor, item, config)
            losses.append(float(multi_order_loss(scores, d, second_order_weight=config.rank_second_order_weight)))
            nearer = d[:, None] < d[None, :]
            right += int((nearer & (scores[:, None] > scores[None, :])).sum())
            pairs += int(nearer.sum())
            nearest = d == d.min()
            top += float(nearest[int(torch.argmax(scores))])
            chance += float(nearest.float().mean())
    scorer.train(was_training)
    return {"loss": float(np.mean(losses)), "pair_accuracy": right / max(pairs, 1), "pairs": pairs,
            "top1_nearest": top / len(items), "top1_chance": chance / len(items), "photos": len(items)}
