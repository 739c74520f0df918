"""Training location models (`gaea.location`) on the embeddings and coordinates of a gallery.

    gaea locmodel train --kind geoclip --gallery gallery/ --out runs/geoclip [--config recipe.yaml]

A seeded share of the gallery (``held_out``) is kept out of training and evaluated with the metrics of
`gaea eval geo`. The run writes into ``out``:

    model.safetensors, config.json   the trained model (open it with gaea.location.load_location_model)
    metrics.json                     held-out metrics, the split, the run's settings
    checkpoints/step-N/              model + trainer state; checkpoints/latest names the newest one
    tensorboard/                     loss, learning rate and held-out accuracy curves
    semivariogram.png / .json        geoclip with negatives: semivariogram, the fitted model

A rerun with the same settings and data resumes from the newest checkpoint (a larger ``epochs`` trains
on), and gives the same model as an uninterrupted run; the folder is a `gaea.runs` run directory, so a
second run on it at the same time, or one with other settings or data, is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gaea.errors import BadInputError, ConfigError
from gaea.geo.distance import haversine_km
from gaea.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from gaea.location import KINDS, LocationModel, evaluate_predictions, load_location_model, read_gps_gallery
from gaea.location.geoclip import GeoCLIPModel
from gaea.location.s2 import S2Model
from gaea.location.shdd import SHDDModel

log = logging.getLogger(__name__)

NEGATIVES = ("plain", "semivariogram")
#: Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "device", "eval_limit")


@dataclass
class LocationTrainConfig:
    """Every setting of a location-model training run (YAML keys and `gaea locmodel train` options)."""

    kind: str = "geoclip"
    gallery: str = ""
    out: str = ""
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    held_out: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    eval_limit: int = 2000
    device: str | None = None
    #: Hyperparameters of the kind (see GEOCLIP_DEFAULTS, S2_DEFAULTS, SHDD_DEFAULTS in gaea.location).
    model: dict[str, Any] = field(default_factory=dict)
    # geoclip
    gps_gallery: str | None = None
    queue_size: int = 4096
    positive_noise_km: float = 0.15
    queue_noise_km: float = 1.0
    negatives: str = "plain"
    semivariogram_model: str = "exponential"
    semivariogram_pairs: int = 100_000
    hard_strength: float = 1.0
    false_negative_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind {self.kind!r}: choose {', '.join(KINDS)}")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"negatives {self.negatives!r}: choose {' or '.join(NEGATIVES)}")
        if self.negatives != "plain" and self.kind != "geoclip":
            raise ConfigError(f"negatives {self.negatives!r} apply to kind geoclip, not {self.kind}")
        if self.gps_gallery and self.kind != "geoclip":
            raise ConfigError(f"gps_gallery applies to kind geoclip, not {self.kind}")
        if not 0.0 <= self.held_out < 1.0:
            raise ConfigError(f"held_out {self.held_out}: must be in [0, 1)")
        for name in ("epochs", "batch_size", "checkpoint_every", "queue_size", "eval_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: must be at least 1")
        if not isinstance(self.model, dict):
            raise ConfigError(f"model: expected a mapping of hyperparameters, got {type(self.model).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> LocationTrainConfig:
    """Settings from a YAML file (optional), then ``overrides`` (None values are ignored).

    Raises
    ------
    ConfigError
        When the file is missing or malformed, or a key is unknown.
    """
    from finetune.config import _read_recipe  # the one reader of YAML settings files

    values: dict[str, Any] = _read_recipe(Path(path)) if path is not None else {}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    known = {spec.name for spec in dataclasses.fields(LocationTrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s){f' in {path}' if path else ''}: {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    try:
        return LocationTrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"bad settings: {error}") from error


# -- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationData:
    """Image embeddings (n x dim) with their (n x 2) latitude, longitude, and the encoder that made them."""

    embeddings: np.ndarray
    coords: np.ndarray
    encoder: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "the training data"
        if len(self.embeddings) == 0:
            raise BadInputError(f"{where}: no photos (an empty gallery)")
        if self.embeddings.ndim != 2 or self.coords.shape != (len(self.embeddings), 2):
            raise BadInputError(f"{where}: {self.embeddings.shape} embeddings need ({len(self.embeddings)}, 2) "
                                f"coordinates, got {self.coords.shape}")
        missing = ~np.isfinite(self.coords).all(axis=1)
        if missing.any():
            raise BadInputError(f"{where}: {int(missing.sum())} photos have no coordinates (row "
                                f"{int(np.argmax(missing))} first); a location model needs every photo's place")

    @classmethod
    def from_gallery(cls, path: str | Path) -> LocationData:
        """The embeddings and coordinates of a gallery made by `gaea gallery build`."""
        from gaea.retrieval.gallery import Gallery

        gallery = Gallery.load(path)
        return cls(gallery.embeddings, np.asarray(gallery.coords, dtype=np.float64), gallery.encoder, str(path))

    def fingerprint(self) -> str:
        """Identifies the data (its coordinates, and a sample of its embeddings) for resumption."""
        digest = hashlib.sha1(np.ascontiguousarray(self.coords).tobytes())
        digest.update(np.ascontiguousarray(self.embeddings[:: max(len(self.embeddings) // 1000, 1)]).tobytes())
        return f"{len(self.embeddings)}x{self.embeddings.shape[1]}:{digest.hexdigest()[:16]}"


def split_rows(count: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) row numbers; at least one row trains."""
    order = np.random.default_rng(seed).permutation(count)
    held = min(int(round(count * held_out)), count - 1)
    return np.sort(order[held:]), np.sort(order[:held])


# -- objectives: how each kind learns -------------------------------------------------------------------


class Objective:
    """The loss of one kind on a batch, with whatever training state it keeps (saved in checkpoints)."""

    def __init__(self, model: LocationModel, config: LocationTrainConfig, data: LocationData, rows: np.ndarray):
        self.model, self.config, self.data, self.rows = model, config, data, rows

    def loss(self, rows: np.ndarray, x: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class GeoCLIPObjective(Objective):
    """Symmetric contrastive loss: image -> GPS over the batch's places and a queue of earlier ones (GeoCLIP
    adds GPS noise: ``positive_noise_km`` to the batch, ``queue_noise_km`` to the queue), and GPS -> image over
    the batch; optionally with semivariogram-weighted negatives."""

    def __init__(self, model: GeoCLIPModel, config: LocationTrainConfig, data: LocationData, rows: np.ndarray,
                 semivariogram: Any = None):
        super().__init__(model, config, data, rows)
        self.semivariogram = semivariogram
        size = min(config.queue_size, len(rows))
        start = np.random.default_rng(config.seed).choice(rows, size, replace=False)
        self.queue_rows = torch.from_numpy(start)   # training rows whose places (and photos) are queued
        self.pointer = 0

    def loss(self, rows: np.ndarray, x: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        model: GeoCLIPModel = self.model
        queued = self.queue_rows.numpy()
        queue_coords = torch.from_numpy(self.data.coords[queued]).float().to(x.device)
        places = torch.cat([_jitter(coords, self.config.positive_noise_km),
                            _jitter(queue_coords, self.config.queue_noise_km)])
        images = model.image_features(x)
        logits = model.logit_scale.exp() * images @ model.location_features(places).T
        targets = torch.arange(len(x), device=x.device)
        logs: dict[str, float] = {}
        image_logits = logits
        if self.semivariogram is not None:
            log_weights = self._log_weights(x, coords, queued, queue_coords)
            image_logits = logits + log_weights
            negatives = ~torch.eye(len(x), logits.shape[1], dtype=torch.bool, device=x.device)
            logs["negatives/dropped"] = float(torch.isinf(log_weights[negatives]).float().mean())
            logs["negatives/hard"] = float((log_weights[negatives] > 0).float().mean())
        loss = (F.cross_entropy(image_logits, targets) + F.cross_entropy(logits[:, :len(x)].T, targets)) / 2
        self._enqueue(rows)
        return loss, logs

    def _log_weights(self, x: torch.Tensor, coords: torch.Tensor, queued: np.ndarray,
                     queue_coords: torch.Tensor) -> torch.Tensor:
        from finetune.semivariogram import negative_log_weights

        queue_x = torch.from_numpy(np.asarray(self.data.embeddings[queued], dtype=np.float32))
        photos = F.normalize(torch.cat([x, queue_x.to(x.device)]), dim=-1)
        visual = 1 - F.normalize(x, dim=-1) @ photos.T
        places = torch.cat([coords, queue_coords.to(coords.device)]).double()
        distance = torch.as_tensor(haversine_km(coords[:, None, 0].double().cpu().numpy(),
                                                coords[:, None, 1].double().cpu().numpy(),
                                                places[None, :, 0].cpu().numpy(), places[None, :, 1].cpu().numpy()),
                                   dtype=torch.float32, device=x.device)
        weights = negative_log_weights(self.semivariogram, distance, visual, hard_strength=self.config.hard_strength,
                                       false_negative_fraction=self.config.false_negative_fraction)
        return weights.fill_diagonal_(0.0)  # the positive itself is never reweighted

    def _enqueue(self, rows: np.ndarray) -> None:
        size = len(self.queue_rows)
        incoming = torch.from_numpy(rows[:size])
        positions = (self.pointer + torch.arange(len(incoming))) % size
        self.queue_rows[positions] = incoming
        self.pointer = int((self.pointer + len(incoming)) % size)

    def after_step(self) -> None:
        with torch.no_grad():  # CLIP's cap on the learnable temperature: logits scaled by at most 100
            self.model.logit_scale.clamp_(0.0, math.log(100.0))

    def state_dict(self) -> dict[str, Any]:
        return {"queue_rows": self.queue_rows.clone(), "pointer": self.pointer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue_rows, self.pointer = state["queue_rows"].clone(), int(state["pointer"])


class S2Objective(Objective):
    """Cross-entropy of every step of each photo's true cell path (teacher forcing)."""

    def __init__(self, model: S2Model, config: LocationTrainConfig, data: LocationData, rows: np.ndarray,
                 paths: np.ndarray):
        super().__init__(model, config, data, rows)
        self.paths = torch.from_numpy(paths)
        self.position = {int(row): index for index, row in enumerate(rows)}

    def loss(self, rows: np.ndarray, x: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        paths = self.paths[[self.position[int(row)] for row in rows]].to(x.device)
        return self.model.path_loss(x, paths), {}


class SHDDObjective(Objective):
    """The SHDD-KL of the regression coefficients (plus ``mse_weight`` times their MSE); for diffusion also
    the denoiser's loss on coefficients noised to a random diffusion time: the MSE of its clean estimate,
    the usual diffusion loss (a scale-free KL would let the scale the sampler feeds back drift)."""

    def loss(self, rows: np.ndarray, x: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        model: SHDDModel = self.model
        target = model.encode_points(coords[:, 0].cpu().numpy(), coords[:, 1].cpu().numpy())
        prior = model.regress(x)
        loss, logs = self._terms(prior, target, "regression", float(model.config["mse_weight"]))
        if model.config["variant"] == "diffusion":
            t = torch.randint(1, int(model.config["timesteps"]) + 1, (len(x),), device=x.device)
            noisy = model.add_noise(target, t, torch.randn_like(target))
            denoised = F.mse_loss(model.denoise(noisy, t, x, prior) * model.scale, target * model.scale)
            loss, logs = loss + denoised, logs | {"denoiser/mse": float(denoised.detach())}
        return loss, logs

    def _terms(self, predicted: torch.Tensor, target: torch.Tensor, name: str,
               mse_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
        model: SHDDModel = self.model
        kl = model.harmonics.kl_loss(predicted, target)
        mse = F.mse_loss(predicted * model.scale, target * model.scale)
        return kl + mse_weight * mse, {f"{name}/kl": float(kl.detach()), f"{name}/mse": float(mse.detach())}


def _jitter(coords: torch.Tensor, km: float) -> torch.Tensor:
    """GeoCLIP's GPS augmentation: Gaussian noise of about ``km`` on each coordinate, kept on the globe."""
    if km <= 0:
        return coords
    noisy = coords + torch.randn_like(coords) * (km / 111.2)
    return torch.stack([noisy[:, 0].clamp(-90, 90), (noisy[:, 1] + 180) % 360 - 180], dim=1)


def build_model(config: LocationTrainConfig, data: LocationData, rows: np.ndarray,
                semivariogram: Any = None) -> tuple[LocationModel, Objective]:
    """A fresh model of ``config.kind`` for the training rows, and its objective."""
    base = {**config.model, "embedding_dim": int(data.embeddings.shape[1]), "encoder": data.encoder}
    coords = data.coords[rows]
    if config.kind == "geoclip":
        model = GeoCLIPModel(base)
        if config.gps_gallery:
            model.set_gps_gallery(*read_gps_gallery(config.gps_gallery))
        else:
            model.set_gps_gallery(coords[:, 0], coords[:, 1])
        return model, GeoCLIPObjective(model, config, data, rows, semivariogram)
    if config.kind == "s2":
        model, paths = S2Model.from_coordinates(base, coords[:, 0], coords[:, 1])
        return model, S2Objective(model, config, data, rows, paths)
    model = SHDDModel(base)
    return model, SHDDObjective(model, config, data, rows)


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out: Path
    model: LocationModel
    metrics: dict[str, Any]
    steps: int
    resumed_from: int


def train_location_model(config: LocationTrainConfig, data: LocationData | None = None, *,
                         overwrite: bool = False, show_progress: bool = True,
                         on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train as ``config`` says (on ``data``, default: ``config.gallery``), resuming a matching checkpoint
    (``overwrite``: deleting an earlier run's work in ``out`` instead).

    ``on_step(step, loss)`` is called after every optimizer step (an exception from it stops the run with
    its checkpoints intact).

    Raises
    ------
    RunInUseError
        When another run is writing to ``out``.
    ConfigError
        When ``out`` is missing or holds the run of other settings or data.
    BadInputError
        When the gallery is empty, lacks coordinates, or a setting names a file that cannot be read.
    """
    if not config.out:
        raise ConfigError("out: where to write the model is required (--out DIR)")
    if data is None:
        if not config.gallery:
            raise ConfigError("gallery: the training gallery is required (--gallery DIR)")
        data = LocationData.from_gallery(config.gallery)
    from gaea.runs import open_run

    with open_run(config.out, job="gaea locmodel train", fingerprint=_fingerprint(config, data),
                  overwrite=overwrite) as out:
        return _train(config, data, out, show_progress=show_progress, on_step=on_step)


def _train(config: LocationTrainConfig, data: LocationData, out: Path, *, show_progress: bool,
           on_step: Callable[[int, float], None] | None) -> TrainResult:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    train_rows, held_rows = split_rows(len(data.embeddings), config.held_out, config.seed)
    torch.manual_seed(config.seed)
    semivariogram = _semivariogram(config, data, train_rows, out) if config.negatives == "semivariogram" else None
    model, objective = build_model(config, data, train_rows, semivariogram)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    per_epoch = max(len(train_rows) // config.batch_size, 1)
    total = per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total))
    step = _resume(out, model, optimizer, schedule, objective, total)
    resumed_from = step
    writer = SummaryWriter(str(out / "tensorboard"), purge_step=step)
    progress = tqdm(total=total, initial=step, desc=f"train {config.kind}", unit="step", disable=not show_progress)
    try:
        model.train()
        for batch_step, rows in _batches(train_rows, config, per_epoch, start=step):
            x = torch.from_numpy(np.asarray(data.embeddings[rows], dtype=np.float32)).to(device)
            coords = torch.from_numpy(data.coords[rows]).float().to(device)
            loss, logs = objective.loss(rows, x, coords)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            objective.after_step()
            step = batch_step + 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
            writer.add_scalar("train/loss", loss.item(), step)
            writer.add_scalar("train/learning_rate", schedule.get_last_lr()[0], step)
            for name, value in logs.items():
                writer.add_scalar(f"train/{name}", value, step)
            if step % per_epoch == 0:
                epoch_metrics = _evaluate(model, data, held_rows[:config.eval_limit])
                for name, value in _flat(epoch_metrics).items():
                    writer.add_scalar(f"held_out/{name}", value, step)
                model.train()
            if step % config.checkpoint_every == 0 or step % per_epoch == 0:
                _save_checkpoint(out, step, model, optimizer, schedule, objective)
            if on_step is not None:
                on_step(step, loss.item())
    finally:
        progress.close()
        writer.close()
    model.eval()
    metrics = {
        "kind": config.kind,
        "steps": step,
        "epochs": config.epochs,
        "train_photos": len(train_rows),
        "held_out_photos": len(held_rows),
        "held_out": _evaluate(model, data, held_rows),
        "data": data.fingerprint(),
        "settings": config.to_dict(),
    }
    if semivariogram is not None:
        metrics["semivariogram"] = dataclasses.asdict(semivariogram) | {"plot": "semivariogram.png"}
    model.save(out)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "split.json", {"seed": config.seed, "held_out": config.held_out,
                                           "data": data.fingerprint(), "held_out_rows": held_rows.tolist()})
    return TrainResult(out, model, metrics, step, resumed_from)


def _batches(rows: np.ndarray, config: LocationTrainConfig, per_epoch: int, *,
             start: int) -> Iterator[tuple[int, np.ndarray]]:
    """(global step, sorted batch rows) from step ``start`` on; each epoch's order is seeded by the epoch
    number, so a resumed run sees exactly the batches an uninterrupted one would."""
    for epoch in range(start // per_epoch, config.epochs):
        order = np.random.default_rng([config.seed, epoch]).permutation(rows)
        for index in range(start - epoch * per_epoch if epoch == start // per_epoch else 0, per_epoch):
            yield epoch * per_epoch + index, np.sort(order[index * config.batch_size:(index + 1) * config.batch_size])


def _evaluate(model: LocationModel, data: LocationData, rows: np.ndarray) -> dict[str, Any] | None:
    if len(rows) == 0:
        return None
    return evaluate_predictions(model, np.asarray(data.embeddings[rows]), data.coords[rows])


def _flat(metrics: dict[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {}
    flat = {f"accuracy_{key}": value for key, value in metrics["accuracy"].items()}
    flat["geoscore"] = metrics["geoscore"]
    if metrics["median_km"] is not None:
        flat["median_km"] = metrics["median_km"]
    return flat


def _warmup_cosine(total: int) -> Callable[[int], float]:
    warmup = max(total // 20, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))

    return factor


def _semivariogram(config: LocationTrainConfig, data: LocationData, rows: np.ndarray, out: Path) -> Any:
    """The semivariogram of the training photos: fitted once, then read back on resumption."""
    from finetune.semivariogram import Semivariogram, fit_semivariogram, plot_semivariogram

    path = out / "semivariogram.json"
    if path.is_file():
        return Semivariogram.load(path)
    semivariogram = fit_semivariogram(np.asarray(data.embeddings[rows]), data.coords[rows],
                                      model=config.semivariogram_model, pairs=config.semivariogram_pairs,
                                      seed=config.seed)
    semivariogram.save(path)
    plot_semivariogram(semivariogram, out / "semivariogram.png",
                       title=f"Semivariogram of {data.source or 'the training photos'} ({len(rows):,} photos)")
    log.info("semivariogram: %s, nugget %.3f, sill %.3f, range %.0f km", semivariogram.model,
             semivariogram.nugget, semivariogram.sill, semivariogram.range_km)
    return semivariogram


# -- checkpoints --------------------------------------------------------------------------------------


def _fingerprint(config: LocationTrainConfig, data: LocationData) -> dict[str, Any]:
    """What a resumed run must share with the run that started its folder: the settings (but those that may
    change, and the paths) and the data."""
    settings = {key: value for key, value in config.to_dict().items()
                if key not in RESUMABLE_CHANGES and key not in ("gallery", "out")}
    return {**settings, "data": data.fingerprint()}


def _save_checkpoint(out: Path, step: int, model: LocationModel, optimizer: Any, schedule: Any,
                     objective: Objective) -> None:
    """Write checkpoints/step-N in full, then point checkpoints/latest at it, then drop older ones."""
    import io

    folder = out / "checkpoints" / f"step-{step:08d}"
    model.save(folder)
    buffer = io.BytesIO()
    torch.save({"step": step, "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "objective": objective.state_dict(),
                "torch_rng": torch.get_rng_state()}, buffer)
    atomic_write_bytes(folder / "trainer_state.pt", buffer.getvalue())
    atomic_write_text(out / "checkpoints" / "latest", folder.name + "\n")
    for older in (out / "checkpoints").glob("step-*"):
        if older.name != folder.name:
            shutil.rmtree(older, ignore_errors=True)


def _resume(out: Path, model: LocationModel, optimizer: Any, schedule: Any, objective: Objective, total: int) -> int:
    """Load the newest checkpoint into the run and return its step (0 when there is none); `open_run` has
    checked that it is a checkpoint of this run's settings and data."""
    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        return 0
    folder = out / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    if state["step"] > total:
        raise ConfigError(f"{out}: its checkpoint is at step {state['step']}, past the {total} steps of "
                          "these epochs; ask for at least as many epochs")
    saved = load_location_model(folder, device=str(model.device))
    model.load_state_dict(saved.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    objective.load_state_dict(state["objective"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming %s from step %d", out, state["step"])
    return int(state["step"])
