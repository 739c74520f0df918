"""Loading an image-text-to-text model for fine-tuning: dtype, 4-bit QLoRA, LoRA targets, frozen parts.

Model parts are found by name, not by class, so any Hugging Face vision-language model works: the
vision tower (``visual``, ``vision_tower``, ...), the merger / projector that maps image features into
the language model (``merger``, ``multi_modal_projector``, ...), and the language model (the rest).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import torch
from torch import nn

from finetune.config import FinetuneConfig
from gaea.errors import ConfigError

log = logging.getLogger(__name__)

VISION_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder", "image_encoder")
MERGER_NAMES = ("merger", "multi_modal_projector", "mm_projector", "connector")
OUTPUT_NAMES = ("lm_head",)


def _part_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?:^|\.)(?:" + "|".join(names) + r")(?:\.|$)")


VISION_RE = _part_pattern(VISION_NAMES)
MERGER_RE = _part_pattern(MERGER_NAMES)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}


def is_vision(name: str) -> bool:
    """Whether parameter or module `name` belongs to the vision tower (the merger excluded)."""
    return bool(VISION_RE.search(name)) and not is_merger(name)


def is_merger(name: str) -> bool:
    """Whether parameter or module `name` belongs to the vision-language merger / projector."""
    return bool(MERGER_RE.search(name))


def load_processor(config: FinetuneConfig) -> Any:
    """The model's processor with the configured image pixel bounds."""
    from gaea.models.vlm import load_processor as load_vlm_processor

    kwargs = {key: getattr(config, key) for key in ("min_pixels", "max_pixels") if getattr(config, key)}
    return load_vlm_processor(config.processor_name_or_path or config.model_name_or_path, **kwargs)


def load_base_model(config: FinetuneConfig) -> nn.Module:
    """The base model in the configured dtype, 4-bit quantized for QLoRA."""
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": _DTYPES[config.torch_dtype]}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(config)
        if torch.cuda.is_available():
            # one whole copy per process: under accelerate / torchrun each rank owns GPU LOCAL_RANK
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        return AutoModelForImageTextToText.from_pretrained(config.model_name_or_path, **kwargs)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model_name_or_path {config.model_name_or_path!r}: cannot load it ({error})") from error


def quantization_config(config: FinetuneConfig) -> Any:
    """bitsandbytes 4-bit settings; the vision tower, merger and output head stay unquantized."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"load_in_4bit needs bitsandbytes, which does not import here ({error})") from error
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if config.torch_dtype == "bfloat16" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
        # transformers matches these from the start of a module name, so each may sit at any depth
        llm_int8_skip_modules=[rf"(?:.*\.)?{name}" for name in (*VISION_NAMES, *MERGER_NAMES, *OUTPUT_NAMES)],
    )


def linear_module_names(model: nn.Module) -> list[str]:
    """Names of every linear layer (bitsandbytes 4-bit layers subclass nn.Linear)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def lora_targets(model: nn.Module, config: FinetuneConfig) -> str:
    """The `target_modules` regex of the LoRA adapter (PEFT matches it in full against module names).

    'all-linear-lm' builds one from the model: every linear layer of the language model (and of the
    vision tower when it is not frozen), never the merger (trained fully or frozen) nor the output head.
    """
    if config.lora_target_modules != "all-linear-lm":
        pattern = config.lora_target_modules
        if not any(re.fullmatch(pattern, name) for name in linear_module_names(model)):
            raise ConfigError(f"lora_target_modules {pattern!r} matches no linear layer of the model")
        return pattern
    excluded = MERGER_NAMES + OUTPUT_NAMES + (VISION_NAMES if config.freeze_vision else ())
    wanted = [name for name in linear_module_names(model) if not _part_pattern(excluded).search(name)]
    if not wanted:
        raise ConfigError(f"{config.model_name_or_path}: found no linear layer of the language model for LoRA")
    leaves = sorted({name.rsplit(".", 1)[-1] for name in wanted})
    pattern = r"^(?!(?:.*\.)?(?:" + "|".join(excluded) + r")\.).*\.(?:" + "|".join(map(re.escape, leaves)) + ")$"
    matched = [name for name in linear_module_names(model) if re.fullmatch(pattern, name)]
    if matched != wanted:
        raise ConfigError("could not express the language model's linear layers as a pattern; set lora_target_modules")
    return pattern


def merger_module_names(model: nn.Module) -> list[str]:
    """The outermost modules named like a merger / projector."""
    names = [name for name, _ in model.named_modules() if name and MERGER_RE.search(name + ".")]
    return [name for name in names if not any(name.startswith(other + ".") for other in names)]


def prepare_model(model: nn.Module, config: FinetuneConfig) -> nn.Module:
    """Wrap `model` with a LoRA adapter (or unfreeze it for full training) as the configuration says."""
    merger = merger_module_names(model)
    if config.train_merger and not merger:
        raise ConfigError(f"train_merger: {config.model_name_or_path} has no module named like {MERGER_NAMES}")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        model.enable_input_require_grads()
    if config.use_lora:
        model = _add_lora(model, config, merger)
    else:
        _unfreeze_for_full_training(model, config)
    log_trainable(model)
    return model


def _add_lora(model: nn.Module, config: FinetuneConfig, merger: list[str]) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model, config),
        modules_to_save=merger if config.train_merger else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _unfreeze_for_full_training(model: nn.Module, config: FinetuneConfig) -> None:
    for name, param in model.named_parameters():
        if is_merger(name):
            param.requires_grad_(config.train_merger)
        elif is_vision(name):
            param.requires_grad_(not config.freeze_vision)
        else:
            param.requires_grad_(True)


def upcast_trainable(model: nn.Module) -> int:
    """Keep trainable parameters in float32 (returns how many were cast).

    A bf16 weight cannot take an AdamW step of 1e-5 (bf16 resolves about 1 part in 128), so the LoRA
    weights and the merger copy train in float32 while the frozen base stays in bf16; autocast
    runs the matmuls in bf16 either way.
    """
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            cast += 1
    return cast


def log_trainable(model: nn.Module) -> tuple[int, int]:
    """Log and return (trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    return trainable, total


def load_model(config: FinetuneConfig) -> nn.Module:
    """The base model prepared for training (see `prepare_model`)."""
    return prepare_model(load_base_model(config), config)

