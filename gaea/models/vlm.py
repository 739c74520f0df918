"""Loading vision-language processors without torchvision.

Qwen2.5-VL's stock processor carries a video processor that imports torchvision. Users who only
send images (everyone here) should not need it, so when the stock processor cannot be built we
assemble an image-only one from the same files: the Pillow image processor, the tokenizer and the
chat template. Every place that loads a processor (backends, fine-tuning, tiny models) goes through
`load_processor`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoProcessor, AutoTokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

log = logging.getLogger(__name__)

QWEN_VL_MODEL_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
    """Qwen2-VL / Qwen2.5-VL processor with images and text only: no video half, no torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        # Saved under the stock class name so the folder looks like any Qwen2.5-VL checkpoint.
        result = super().save_pretrained(save_directory, **kwargs)
        config_path = Path(save_directory) / "processor_config.json"
        if config_path.exists():
            config = json.loads(config_path.read_text())
            config["processor_class"] = "Qwen2_5_VLProcessor"
            config_path.write_text(json.dumps(config, indent=2) + "\n")
        return result


def load_processor(model: str | Path, **kwargs: Any) -> ProcessorMixin:
    """The processor of `model` (hub id or local path); image-only for Qwen-VL when torchvision is missing.

    Extra keyword arguments (e.g. ``min_pixels``, ``max_pixels``) go to the image processor.
    """
    try:
        return AutoProcessor.from_pretrained(str(model), **kwargs)
    except (ImportError, ValueError, TypeError, AttributeError, OSError) as error:
        if isinstance(error, OSError) and not Path(str(model)).exists():
            raise
        model_type = _model_type(model)
        if model_type not in QWEN_VL_MODEL_TYPES:
            raise
        log.info("stock processor of %s unavailable (%s); using the image-only processor", model, error)
    return image_only_processor(model, **kwargs)


def image_only_processor(model: str | Path, **kwargs: Any) -> ImageOnlyQwenVLProcessor:
    """Assemble the image-only Qwen-VL processor from a checkpoint's files."""
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(model), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    chat_template = getattr(tokenizer, "chat_template", None) or _read_chat_template(model)
    return ImageOnlyQwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def _model_type(model: str | Path) -> str:
    try:
        return AutoConfig.from_pretrained(str(model)).model_type
    except (OSError, ValueError):
        return ""


def _read_chat_template(model: str | Path) -> str | None:
    from huggingface_hub import hf_hub_download

    for name in ("chat_template.jinja", "chat_template.json"):
        local = Path(str(model)) / name
        try:
            path = local if local.exists() else Path(hf_hub_download(str(model), name))
        except Exception:  # noqa: BLE001 - a missing optional file on the hub
            continue
        text = path.read_text()
        return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None
