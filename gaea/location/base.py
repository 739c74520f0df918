"""What every location model shares: one ``predict(embeddings, k) -> candidates`` interface, input checks,
and saving to / loading from a folder (``model.safetensors`` + ``config.json``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from gaea.errors import BadInputError, ConfigError
from gaea.io import atomic_write_bytes, atomic_write_json, read_json
from gaea.types import Candidate

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1

#: kind -> model class, filled in by each kind's module as it is imported.
MODEL_CLASSES: dict[str, type[LocationModel]] = {}


class LocationModel(nn.Module):
    """A model that turns frozen image embeddings into candidate places on the sphere.

    Subclasses set ``kind``, build their layers from ``config`` (a JSON-able dict: the kind's hyperparameters
    plus ``embedding_dim`` and ``encoder``, the image encoder the embeddings come from) and implement
    :meth:`_predict_batch`. Tensors a model needs at inference (a GPS gallery, a cell vocabulary) are
    registered buffers, so they travel in ``model.safetensors`` with the weights.
    """

    kind: ClassVar[str] = ""
    #: Decoding options `predict` accepts, with their defaults; a kind's config may override the defaults.
    predict_options: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            MODEL_CLASSES[cls.kind] = cls

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        if int(config.get("embedding_dim", 0)) < 1:
            raise ConfigError(f"{self.kind} model: embedding_dim must be a positive integer, got "
                              f"{config.get('embedding_dim')!r}")
        self.config = dict(config)

    @property
    def embedding_dim(self) -> int:
        return int(self.config["embedding_dim"])

    @property
    def encoder(self) -> str:
        """The image encoder whose embeddings this model reads ("" when unknown)."""
        return str(self.config.get("encoder", ""))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- inference ----------------------------------------------------------------------------------

    def check_embeddings(self, embeddings: Any) -> torch.Tensor:
        """``embeddings`` as an (n x embedding_dim) float32 tensor on the model's device.

        Raises
        ------
        BadInputError
            When they are not a finite matrix (or vector) of the width the model was trained on.
        """
        array = np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings,
                           dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.embedding_dim:
            raise BadInputError(
                f"embeddings of shape {array.shape}: this {self.kind} model reads {self.embedding_dim}-dimensional "
                f"embeddings (of {self.encoder or 'the encoder it was trained on'}), one row per photo"
            )
        if not np.isfinite(array).all():
            raise BadInputError("embeddings contain NaN or infinite values")
        return torch.from_numpy(array).to(self.device)

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Decoding options: the class defaults, then the model's config, then ``options``."""
        unknown = sorted(set(options) - set(self.predict_options))
        if unknown:
            known = ", ".join(sorted(self.predict_options)) or "none"
            raise ConfigError(f"{self.kind} model: unknown prediction option(s) {', '.join(unknown)} (known: {known})")
        resolved = {name: self.config.get(name, default) for name, default in self.predict_options.items()}
        resolved.update({name: value for name, value in options.items() if value is not None})
        return resolved

    def predict(self, embeddings: Any, k: int = 5, *, batch_size: int = 1024,
                **options: Any) -> list[list[Candidate]]:
        """The ``k`` most likely places of each photo, best first.

        Parameters
        ----------
        embeddings
            (n x embedding_dim) image embeddings, or one (embedding_dim,) vector.
        k
            Candidates per photo.
        batch_size
            Photos per forward pass.
        options
            Kind-specific decoding options (see ``predict_options`` of each kind).
        """
        lat, lon, score = self.predict_arrays(embeddings, k, batch_size=batch_size, **options)
        source = self.candidate_source(self.resolve_options(options))
        return [[Candidate(float(a), float(o), float(s), source) for a, o, s in zip(la, lo, sc, strict=True)]
                for la, lo, sc in zip(lat, lon, score, strict=True)]

    def predict_arrays(self, embeddings: Any, k: int = 5, *, batch_size: int = 1024,
                       **options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`predict` as three (n x k) arrays: latitudes, longitudes, scores (for evaluating many photos)."""
        if k < 1:
            raise BadInputError(f"k must be at least 1, got {k}")
        resolved = self.resolve_options(options)
        x = self.check_embeddings(embeddings)
        was_training = self.training
        self.eval()
        parts = []
        try:
            with torch.no_grad():
                for start in range(0, len(x), batch_size):
                    parts.append(self._predict_batch(x[start:start + batch_size], k, **resolved))
        finally:
            self.train(was_training)
        if not parts:
            empty = np.zeros((0, k))
            return empty, empty.copy(), empty.copy()
        return tuple(np.concatenate([np.asarray(part[i], dtype=np.float64) for part in parts]) for i in range(3))

    def candidate_source(self, options: dict[str, Any]) -> str:
        """The ``source`` written on this model's candidates."""
        return self.kind

    def _predict_batch(self, x: torch.Tensor, k: int, **options: Any) -> tuple[Any, Any, Any]:
        raise NotImplementedError

    # -- saving and loading -------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically, weights first)."""
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"kind": self.kind}))
        atomic_write_json(directory / CONFIG_FILE, {"kind": self.kind, "format_version": FORMAT_VERSION,
                                                    **self.config})
        return directory

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, torch.Tensor]) -> LocationModel:
        """A model of this kind from its config (which records the size of every data-dependent buffer,
        such as a vocabulary or a GPS gallery) and its saved tensors."""
        model = cls(config)
        model.load_state_dict(state)
        return model


def load_location_model(directory: str | Path, *, device: str | None = None) -> LocationModel:
    """Open a location model saved by :meth:`LocationModel.save` (or `gaea locmodel train`).

    Raises
    ------
    BadInputError
        When the folder holds no location model, or its files are damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise BadInputError(f"{directory}: not a location model (expected {CONFIG_FILE} and {WEIGHTS_FILE}; "
                            "train one with `gaea locmodel train`)")
    config = read_json(config_path)
    kind = config.pop("kind", None)
    config.pop("format_version", None)
    model_class = model_class_for(kind, where=str(config_path))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise BadInputError(f"{weights_path}: unreadable weights ({error})") from error
    try:
        model = model_class.from_state(config, state)
    except RuntimeError as error:
        raise BadInputError(f"{directory}: the weights do not fit the config ({error})") from error
    model.eval()
    return model.to(device or "cpu")


def model_class_for(kind: Any, *, where: str = "kind") -> type[LocationModel]:
    """The class of a location-model kind (``geoclip``, ``s2``, ``shdd``)."""
    import gaea.location  # noqa: F401  (importing the package registers every kind)

    if kind not in MODEL_CLASSES:
        raise ConfigError(f"{where}: unknown location-model kind {kind!r} (known: {', '.join(sorted(MODEL_CLASSES))})")
    return MODEL_CLASSES[kind]


def batched(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int) -> torch.Tensor:
    """``function`` applied to ``x`` in row chunks of ``size`` (bounded memory on large inputs)."""
    return torch.cat([function(x[start:start + size]) for start in range(0, len(x), size)])
