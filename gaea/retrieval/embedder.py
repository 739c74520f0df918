"""Image embeddings for retrieval: CLIP and SigLIP families through transformers, or any
sentence-transformers image model. Every embedding is an L2-normalised float32 vector, so inner
product is cosine similarity."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gaea.errors import ConfigError
from gaea.images import load_image
from gaea.settings import get_settings

log = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image


class Embedder:
    """Turns photos into unit-length vectors with an image encoder.

    Parameters
    ----------
    model
        Hub id or local path of a CLIP / SigLIP checkpoint (transformers) or, with
        ``library="sentence-transformers"``, of a sentence-transformers image model. None means the
        setting (``openai/clip-vit-large-patch14``, as Img2Loc).
    library
        ``"auto"`` (transformers for CLIP / SigLIP configs, sentence-transformers otherwise),
        ``"transformers"`` or ``"sentence-transformers"``.
    batch_size
        Images per forward pass in :meth:`embed`.
    device
        Torch device; None picks CUDA when available.
    """

    def __init__(self, model: str | Path | None = None, *, library: str = "auto", batch_size: int = 32,
                 device: str | None = None):
        self.model_name = str(model or get_settings().encoder)
        self.batch_size = batch_size
        self._asked_device = device
        from gaea.models.hub import prepare_hub_model

        prepare_hub_model(self.model_name, what="image encoder")  # before torch loads: an offline failure is fast
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.library = _resolve_library(self.model_name, library)
        if self.library == "transformers":
            self._model, self._processor = _load_transformers_encoder(self.model_name, self.device)
            self._st_model = None
        else:
            self._st_model = _load_sentence_transformer(self.model_name, self.device)
        #: The embedding of a fixed grey image: what this encoder is, wherever it runs (galleries built on
        #: other machines are merged only when their encoders embed it alike).
        self.probe = self._embed_pils([Image.new("RGB", (32, 32), (127, 127, 127))])[0]
        self.dim = int(self.probe.shape[0])
        log.info("encoder %s (%s) gives %d-dimensional embeddings", self.model_name, self.library, self.dim)

    def recipe(self) -> dict[str, object]:
        """The arguments that build this encoder again, on another machine (its device as asked: a GPU
        worker of a cluster takes its GPU even when this machine has none)."""
        return {"model": self.model_name, "library": self.library, "batch_size": self.batch_size,
                "device": self._asked_device}

    def embed(self, images: Sequence[ImageInput], *, show_progress: bool = False) -> np.ndarray:
        """Embeddings of ``images`` (paths or PIL images) as an (n x dim) float32 matrix, rows L2-normalised.

        Raises
        ------
        BadInputError
            When a file is missing or not a decodable image (naming the file).
        """
        from tqdm.auto import tqdm

        chunks = []
        starts = range(0, len(images), self.batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not show_progress):
            batch = [_as_pil(image) for image in images[start:start + self.batch_size]]
            chunks.append(self._embed_pils(batch))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks)

    def embed_one(self, image: ImageInput) -> np.ndarray:
        """The embedding of one photo, a (dim,) float32 unit vector."""
        return self._embed_pils([_as_pil(image)])[0]

    def _embed_pils(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            if self._st_model is not None:
                features = self._st_model.encode(images, convert_to_numpy=True, batch_size=self.batch_size)
                features = np.asarray(features, dtype=np.float32)
            else:
                inputs = self._processor(images=images, return_tensors="pt").to(self.device)
                output = self._model.get_image_features(pixel_values=inputs["pixel_values"])
                # transformers 5 may return a model output whose pooled features are the embeddings.
                tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
                features = tensor.float().cpu().numpy()
        return l2_normalise(features)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` scaled to unit length (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _as_pil(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    return load_image(image)


def _resolve_library(model: str, library: str) -> str:
    if library in ("transformers", "sentence-transformers"):
        return library
    if library != "auto":
        raise ConfigError(f"unknown encoder library {library!r}; choose auto, transformers or sentence-transformers")
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(model).model_type
    except (OSError, ValueError):
        # No transformers config (a sentence-transformers folder, or an unreachable hub id): let
        # sentence-transformers try, and let its error name the model if that fails too.
        return "sentence-transformers"
    return "transformers" if model_type in ("clip", "siglip", "siglip2") else "sentence-transformers"


def _load_transformers_encoder(model: str, device: str):
    from transformers import AutoConfig, AutoModel

    model_type = AutoConfig.from_pretrained(model).model_type
    encoder = AutoModel.from_pretrained(model).to(device).eval()
    return encoder, _load_image_processor(model, model_type)


def _load_image_processor(model: str, model_type: str):
    """The image processor; the Pillow classes where AutoImageProcessor would need torchvision."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(model)
    except (ImportError, ValueError) as error:
        log.info("AutoImageProcessor for %s unavailable (%s); using the Pillow image processor", model, error)
    if model_type == "clip":
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as processor_class
    elif model_type in ("siglip", "siglip2"):
        from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil as processor_class
    else:
        raise ConfigError(f"no image processor for encoder {model} (model type {model_type!r})")
    return processor_class.from_pretrained(model)


def _load_sentence_transformer(model: str, device: str):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(model, device=device)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load image encoder {model!r}: {error}") from error
