"""GeoRanker's ranker (Jia et al., NeurIPS 2025): a vision-language model with a LoRA adapter and a scalar
head that scores one (photo, candidate evidence) pair at a time; candidates are ranked by their scores.

The pair is one user turn: the photo, then up to ``evidence_images`` of the candidate's gallery photos as
images (the photos taken near it, as GeoRanker shows them: a ranker can then judge whether the photo looks
like the place), then the candidate's evidence as text (`gaea.prompts.ranker_pair_text`: coordinates,
nearest place, source, the gallery photos near it and their distances); the score is a head on the last
token's final hidden state plus a visual match of the photo against the evidence photos (`PairScorer`). A
gallery photo is shown when its ``source`` is a readable image file (a gallery built from a folder or a
manifest of files). Training (`gaea finetune train --task rank`, `finetune.rank`) uses
GeoRanker's multi-order distance loss. A trained ranker is a folder:

    ranker.json          base model, image size, evidence settings (photos named, photos shown)
    adapter/             the LoRA adapter (peft)
    head.safetensors     the scalar head and the visual match weights (`PairScorer`)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gaea import prompts
from gaea.errors import BadInputError
from gaea.io import atomic_write_bytes, atomic_write_json, read_json
from gaea.ranking.base import Ranking, ranked
from gaea.ranking.candidates import GalleryPlaces
from gaea.types import Candidate, Message, Neighbor

RANKER_FILE = "ranker.json"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"
#: Pairs scored in one forward pass.
SCORING_BATCH = 8
#: Side of the grid the visual match term pools every photo's image tokens to.
MATCH_GRID = 4
#: Gallery photos kept decoded (a photo's candidates often share evidence photos). Few: a decoded photo
#: is its full size (a 12 MP one 36 MB), so thousands would hold gigabytes.
_PHOTO_CACHE = 32


def hidden_size(model: nn.Module) -> int:
    """Width of the language model's hidden states (text_config for vision-language configs)."""
    config = model.config
    return int(getattr(config, "text_config", config).hidden_size)


class PairScorer(nn.Module):
    """The vision-language model, a scalar head on its last token's final hidden state, and a visual match
    term: the photo's image tokens against each evidence photo's, position by position on a common grid.

    The match is ``mean_e sum_g (q_g * w) . e_g / G^2`` over the evidence photos e of a pair, with q_g and
    e_g the final hidden states of the photo's and the evidence photo's image tokens average-pooled to a
    G x G grid (`MATCH_GRID`; any photo size maps onto it) and w a learned weight per hidden unit, zero at
    the start, so an untrained ranker is the last-token head alone. Why: GeoRanker's ranker lets a 7B model
    compare the photo with the candidate's evidence through its attention; a model too small or too briefly
    trained to learn that comparison (the tiny CPU models here) still gets it as an explicit, trainable
    term. Pairs without evidence photos get 0."""

    def __init__(self, vlm: nn.Module, *, head: nn.Linear | None = None):
        super().__init__()
        self.vlm = vlm
        self.head = head or nn.Linear(hidden_size(vlm), 1)
        self.match = nn.Parameter(torch.zeros(hidden_size(vlm)))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """One score per sequence of the (left-padded) batch."""
        out = self.vlm(**inputs, output_hidden_states=True, return_dict=True, logits_to_keep=1)
        hidden = out.hidden_states[-1]
        score = self.head(hidden[:, -1, :].to(self.head.weight.dtype)).squeeze(-1)
        if "image_grid_thw" not in inputs:
            return score
        return score + self._match(hidden, inputs["input_ids"], inputs["image_grid_thw"])

    def _match(self, hidden: torch.Tensor, input_ids: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """The visual match term of each sequence (see the class docstring)."""
        config = getattr(self.vlm, "config", None)
        image_token = int(getattr(config, "image_token_id", -1))
        merge = int(getattr(getattr(config, "vision_config", None), "spatial_merge_size", 2))
        is_image = input_ids == image_token
        tokens = hidden[is_image].to(self.match.dtype)  # every image token of the batch, sequence by sequence
        counts = [int(t * (h // merge) * (w // merge)) for t, h, w in grid_thw.tolist()]
        if sum(counts) != len(tokens):
            return torch.zeros(len(hidden), dtype=self.match.dtype, device=hidden.device)
        grids = [self._pooled(chunk, thw, merge) for chunk, thw in zip(tokens.split(counts), grid_thw.tolist(),
                                                                      strict=True)]
        terms, next_image = [], 0
        for row in is_image.sum(dim=1).tolist():
            taken, images = 0, []
            while taken < row:
                images.append(grids[next_image])
                taken += counts[next_image]
                next_image += 1
            if len(images) < 2:
                terms.append(self.match.new_zeros(()))
                continue
            query, evidence = images[0], torch.stack(images[1:])
            terms.append(((query * self.match) * evidence).sum(dim=-1).mean())
        return torch.stack(terms)

    @staticmethod
    def _pooled(chunk: torch.Tensor, thw: list[int], merge: int) -> torch.Tensor:
        """One image's tokens (t x h x w, row-major) averaged over time and pooled to MATCH_GRID^2 x hidden."""
        t, h, w = thw[0], thw[1] // merge, thw[2] // merge
        grid = chunk.reshape(t, h, w, -1).mean(dim=0).permute(2, 0, 1)
        pooled = nn.functional.adaptive_avg_pool2d(grid, MATCH_GRID)
        return pooled.flatten(1).transpose(0, 1)


@functools.lru_cache(maxsize=_PHOTO_CACHE)
def _gallery_image(path: str) -> Any:
    from gaea.images import load_image

    return load_image(path)


def evidence_images(candidate: Candidate, count: int) -> list[Any]:
    """The first ``count`` of the candidate's photos that open as images (a gallery photo's ``source`` is its
    file; photos without a readable file are left to the text)."""
    from gaea.errors import PhotoRejected

    images = []
    for photo in candidate.photos:
        if len(images) >= count:
            break
        if photo.source and Path(photo.source).is_file():
            try:
                images.append(_gallery_image(str(Path(photo.source).resolve())))
            except PhotoRejected:
                continue
    return images


def pair_messages(image: Any, candidate: Candidate, *, photos_per_candidate: int,
                  evidence_images_count: int = 0) -> list[Message]:
    """The chat turn of one (photo, candidate) pair: the photo, the candidate's photos shown, the text."""
    shown = evidence_images(candidate, evidence_images_count)
    images = ([image] if image is not None else []) + shown
    return [Message.user(prompts.ranker_pair_text(candidate, photos_per_candidate=photos_per_candidate,
                                                  images_shown=len(shown)), images=images)]


def pair_inputs(processor: Any, image: Any, candidates: Sequence[Candidate], *, photos_per_candidate: int,
                evidence_images_count: int = 0) -> dict[str, torch.Tensor]:
    """Model inputs for the pairs of one photo with each candidate, left-padded (the head reads the end)."""
    texts, images = [], []
    for candidate in candidates:
        turn = pair_messages(image, candidate, photos_per_candidate=photos_per_candidate,
                             evidence_images_count=evidence_images_count)[0]
        hf = turn.to_hf()
        texts.append(processor.apply_chat_template([hf], tokenize=False, add_generation_prompt=False))
        images += [part["image"] for part in hf["content"] if part["type"] == "image"]
    processor.tokenizer.padding_side = "left"
    return dict(processor(text=texts, images=images or None, padding=True, return_tensors="pt"))


class TrainedRanker:
    """Scores every candidate with a `PairScorer` in this process (transformers); ``gallery`` adds its photos
    nearest each candidate to the evidence, as in training."""

    name = "trained"

    def __init__(self, scorer: PairScorer, processor: Any, settings: dict[str, Any], *, gallery: Any = None):
        self.scorer = scorer.eval()
        self.processor = processor
        self.settings = settings
        self.places = GalleryPlaces(gallery) if gallery is not None else None

    @property
    def photos_per_candidate(self) -> int:
        return int(self.settings.get("photos_per_candidate", 3))

    @property
    def evidence_images(self) -> int:
        """Candidate photos shown as images, as in training (0 for rankers trained before images were shown)."""
        return int(self.settings.get("evidence_images", 0))

    def scores(self, image: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        """The head's score of each (photo, candidate) pair."""
        device = next(self.scorer.parameters()).device
        parts = []
        with torch.no_grad():
            for start in range(0, len(candidates), SCORING_BATCH):
                inputs = pair_inputs(self.processor, image, candidates[start:start + SCORING_BATCH],
                                     photos_per_candidate=self.photos_per_candidate,
                                     evidence_images_count=self.evidence_images)
                parts.append(self.scorer(**{k: v.to(device) for k, v in inputs.items()}).float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros(0)

    def rank(self, image: Any, candidates: Sequence[Candidate], *, embedding: np.ndarray | None = None,
             support: Sequence[Neighbor] = ()) -> Ranking:
        if not candidates:
            return Ranking([], self.name)
        photos = max(self.photos_per_candidate, self.evidence_images)
        shown = self.places.with_photos(candidates, photos) if self.places else list(candidates)
        return ranked(shown, self.scores(image, shown), self.name)

    # -- saving and loading -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the adapter, the head and ``ranker.json`` into ``directory``."""
        return save_ranker(self.scorer, self.processor, self.settings, directory)

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None, gallery: Any = None) -> TrainedRanker:
        """Open a ranker saved by `save` (or `gaea finetune train --task rank`, its ``final/`` folder).

        Raises
        ------
        BadInputError
            When the folder holds no ranker or its files are damaged.
        """
        from peft import PeftModel
        from transformers import AutoModelForImageTextToText

        from gaea.models.vlm import load_processor

        directory = Path(directory)
        settings_path = directory / RANKER_FILE
        if not settings_path.is_file() or not (directory / HEAD_FILE).is_file():
            raise BadInputError(f"{directory}: not a trained ranker (expected {RANKER_FILE} and {HEAD_FILE}; train one "
                                "with `gaea finetune train --task rank`)")
        settings = read_json(settings_path)
        base = settings.get("base_model") if isinstance(settings, dict) else None
        if not base:
            raise BadInputError(f"{settings_path}: names no base_model")
        vlm = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
        if (directory / ADAPTER_DIR).is_dir():
            vlm = PeftModel.from_pretrained(vlm, str(directory / ADAPTER_DIR))
        scorer = PairScorer(vlm)
        _load_head(scorer, directory)
        pixels = {key: settings[key] for key in ("min_pixels", "max_pixels") if settings.get(key)}
        processor = load_processor(base, **pixels)
        return cls(scorer.to(device or "cpu"), processor, settings, gallery=gallery)


def load_weights(scorer: PairScorer, directory: str | Path) -> None:
    """Read a ranker folder's adapter (when it has one) and head into ``scorer``, whose model already carries
    that adapter's LoRA layers (resuming a training run from its checkpoint)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    adapter = directory / ADAPTER_DIR / "adapter_model.safetensors"
    if adapter.is_file():
        set_peft_model_state_dict(scorer.vlm, load_file(str(adapter)))
    _load_head(scorer, directory)


def _load_head(scorer: PairScorer, directory: Path) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(directory / HEAD_FILE))
    head = {name.removeprefix("head."): tensor for name, tensor in saved.items() if name.startswith("head.")}
    try:
        scorer.head.load_state_dict(head)
        if "match" in saved:  # rankers saved before the visual match term have none: it stays 0
            scorer.match.data.copy_(saved["match"].to(scorer.match.dtype))
    except RuntimeError as error:
        raise BadInputError(f"{directory / HEAD_FILE}: does not fit this model ({error})") from error


def save_ranker(scorer: PairScorer, processor: Any, settings: dict[str, Any], directory: str | Path) -> Path:
    """The ranker folder (see the module docstring): the adapter (with any module peft trains in full, such as
    the merger), the head, then ``ranker.json`` last (its presence marks a finished save)."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vlm = scorer.vlm
    if hasattr(vlm, "save_pretrained") and hasattr(vlm, "peft_config"):
        vlm.save_pretrained(str(directory / ADAPTER_DIR))
    head = {f"head.{name}": tensor.detach().cpu().contiguous() for name, tensor in scorer.head.state_dict().items()}
    head["match"] = scorer.match.detach().cpu().contiguous()
    atomic_write_bytes(directory / HEAD_FILE, save(head))
    atomic_write_json(directory / RANKER_FILE, {"format_version": 1, **settings})
    return directory

