"""Fine-tuning configuration: one dataclass whose fields carry their help text.

A recipe YAML file gives the defaults, `--key value` flags override them, and any key that is not a
field is rejected with a ConfigError naming it, so a typo never silently trains with the wrong value.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gaea.errors import ConfigError
from gaea.extras import require
from gaea.models.hub import prepare_hub_model

if TYPE_CHECKING:
    from gaea.commands.parsing import CommandParser


def _field(default: Any, help_: str, group: str, **kwargs: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_, "group": group})
    return field(default=default, metadata={"help": help_, "group": group}, **kwargs)


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (model, adapter, data, training)."""

    # task
    task: str = _field("sft", "what to train: sft (answers, a LoRA adapter) or rank (GeoRanker's ranker: LoRA and a "
                              "scalar head on a `gaea data build-ranking` set)", "task")
    rank_second_order_weight: float = _field(1.0, "rank: weight of the second-order (distance-gap) term of the "
                                                  "multi-order distance loss", "task")
    rank_candidates: int = _field(16, "rank: candidates of a photo scored per optimizer step", "task")
    rank_photos_per_candidate: int = _field(3, "rank: gallery photos named in each candidate's evidence", "task")
    rank_evidence_images: int = _field(1, "rank: of a candidate's gallery photos, how many the ranker sees as images "
                                          "beside the photo (0: named in the text only)", "task")
    # model
    model_name_or_path: str = _field("", "base model: a Hugging Face hub id or a local folder", "model")
    processor_name_or_path: str | None = _field(None, "processor, when it differs from the model", "model")
    torch_dtype: str = _field("bfloat16", "weights dtype: bfloat16, float16 or float32", "model")
    attn_implementation: str | None = _field(None, "attention kernel: sdpa, flash_attention_2, eager", "model")
    min_pixels: int | None = _field(None, "smallest image size in pixels after resizing", "model")
    max_pixels: int | None = _field(None, "largest image size in pixels after resizing", "model")
    gradient_checkpointing: bool = _field(True, "recompute activations in the backward pass to save memory", "model")
    # adapter
    use_lora: bool = _field(True, "train a LoRA adapter (false: train the language model's weights fully)", "adapter")
    load_in_4bit: bool = _field(False, "QLoRA: load the base weights in 4 bit (bitsandbytes, NF4)", "adapter")
    bnb_4bit_quant_type: str = _field("nf4", "4-bit quantization type: nf4 or fp4", "adapter")
    bnb_4bit_use_double_quant: bool = _field(True, "quantize the quantization constants too", "adapter")
    lora_r: int = _field(16, "LoRA rank", "adapter")
    lora_alpha: int = _field(32, "LoRA scaling numerator (scale = alpha / r)", "adapter")
    lora_dropout: float = _field(0.01, "dropout on the LoRA input", "adapter")
    lora_target_modules: str = _field(
        "all-linear-lm",
        "which linear layers get LoRA: 'all-linear-lm' (every linear layer of the language model) or a regex "
        "matched in full against module names",
        "adapter",
    )
    freeze_vision: bool = _field(
        True, "keep the vision tower frozen (false: it gets LoRA / full training too)", "adapter"
    )
    train_merger: bool = _field(False, "train the vision-language merger / projector fully", "adapter")
    merger_learning_rate: float | None = _field(None, "learning rate of the merger (default: learning_rate)", "adapter")
    # data
    data: str = _field("", "a `gaea data build` folder, a llava / messages JSON(L) export, parquet, a save_to_disk "
                           "folder (DIR[:SPLIT]) or a hub dataset (hf:OWNER/NAME[:SPLIT])", "data")
    data_format: str = _field("auto", "rows of which layout to train on: auto, gaea, llava or messages", "data")
    image_root: str | None = _field(None, "folder that relative image paths start from (default: the data's)", "data")
    eval_data: str | None = _field(None, "a separate evaluation set (same formats as data)", "data")
    eval_ratio: float = _field(0.0, "fraction of data held out for eval loss when eval_data is not given", "data")
    max_samples: int | None = _field(None, "use only the first N samples (smoke runs)", "data")
    max_length: int = _field(
        1024, "most text tokens per sample (image tokens, bounded by max_pixels, not counted); cut at the end", "data"
    )
    system_prompt: str | None = _field(None, "system prompt of every sample (default: the chat template's)", "data")
    # training
    output_dir: str = _field("runs/finetune", "where checkpoints, logs and the final adapter go", "training")
    num_train_epochs: float = _field(1.0, "passes over the data", "training")
    max_steps: int = _field(-1, "stop after this many optimizer steps (-1: run the epochs)", "training")
    per_device_train_batch_size: int = _field(1, "samples per device per forward pass", "training")
    per_device_eval_batch_size: int = _field(1, "samples per device per eval forward pass", "training")
    gradient_accumulation_steps: int = _field(1, "forward passes per optimizer step", "training")
    learning_rate: float = _field(1e-4, "peak learning rate", "training")
    lr_scheduler_type: str = _field("cosine", "learning-rate schedule (transformers names)", "training")
    warmup_ratio: float = _field(0.03, "fraction of steps spent warming up", "training")
    weight_decay: float = _field(0.1, "AdamW weight decay (not on biases and norms)", "training")
    max_grad_norm: float = _field(1.0, "gradient clipping", "training")
    optim: str = _field("adamw_torch", "optimizer (transformers names, e.g. paged_adamw_8bit for QLoRA)", "training")
    bf16: bool = _field(True, "bf16 mixed precision (ignored where the device lacks it)", "training")
    logging_steps: int = _field(10, "log every N steps", "training")
    save_steps: int = _field(500, "checkpoint every N steps", "training")
    save_total_limit: int | None = _field(3, "keep only the last N checkpoints", "training")
    eval_steps: int | None = _field(None, "evaluate every N steps (default: save_steps)", "training")
    report_to: list[str] = _field(["tensorboard"], "loggers: tensorboard, wandb, none", "training")
    run_name: str | None = _field(None, "run name shown by the loggers", "training")
    resume_from_checkpoint: str | None = _field(
        None, "a checkpoint folder, or 'last' for the newest one in output_dir", "training"
    )
    deepspeed: str | None = _field(None, "DeepSpeed JSON config (e.g. finetune/configs/ds_zero3.json)", "training")
    dataloader_num_workers: int = _field(0, "data-loading worker processes", "training")
    seed: int = _field(42, "seed of weights init, data order and the held-out split", "training")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on values that cannot work together."""
        if self.task not in ("sft", "rank"):
            raise ConfigError(f"task {self.task!r}: choose sft or rank")
        if self.data_format not in ("auto", "gaea", "llava", "messages"):
            raise ConfigError(f"data_format {self.data_format!r}: choose auto, gaea, llava or messages")
        if self.torch_dtype not in ("bfloat16", "float16", "float32", "auto"):
            raise ConfigError(f"torch_dtype {self.torch_dtype!r}: choose bfloat16, float16, float32 or auto")
        if self.load_in_4bit and not self.use_lora:
            raise ConfigError("load_in_4bit needs use_lora: 4-bit weights cannot be trained directly")
        if not 0.0 <= self.eval_ratio < 1.0:
            raise ConfigError(f"eval_ratio {self.eval_ratio}: must be in [0, 1)")
        if self.max_length < 16:
            raise ConfigError(f"max_length {self.max_length}: too short to hold a prompt and an answer")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ConfigError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if self.rank_evidence_images < 0:
            raise ConfigError(f"rank_evidence_images {self.rank_evidence_images}: must be 0 or more")
        for name in ("lora_r", "per_device_train_batch_size", "gradient_accumulation_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: must be at least 1")

    def unused_settings(self) -> list[str]:
        """Settings that differ from their defaults but cannot apply with the others (each a sentence), so the
        command says so instead of training as if they had been heard. Warnings, not errors: the value may
        come from a recipe that the flags deliberately override."""
        changed = {name for name, spec in FIELDS.items() if getattr(self, name) != _default_of(spec)}
        rules = (
            (not self.use_lora, ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"), "use_lora is false"),
            (not self.load_in_4bit, ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant"), "load_in_4bit is false"),
            (not self.train_merger, ("merger_learning_rate",), "train_merger is false"),
            (bool(self.eval_data), ("eval_ratio",), "eval_data is the evaluation set"),
            (not (self.eval_data or self.eval_ratio), ("eval_steps",), "there is no eval_data and no eval_ratio"),
            (self.task == "rank", SFT_ONLY, "--task rank trains on a ranking set (these apply to sft)"),
            (self.task != "rank", RANK_ONLY, f"task is {self.task} (these apply to --task rank)"),
        )
        sentences = []
        for applies_not, names, reason in rules:
            unused = [name for name in names if name in changed]
            if applies_not and unused:
                sentences.append(f"{', '.join(unused)} unused: {reason}")
        return sentences

    def require_model_and_data(self) -> None:
        """Raise ConfigError when a training run lacks its two mandatory inputs."""
        missing = [name for name in ("model_name_or_path", "data") if not getattr(self, name)]
        if missing:
            raise ConfigError(
                f"missing {', '.join(missing)}: set it in the recipe or pass {option_name(missing[0])} VALUE"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def preflight(config: FinetuneConfig) -> None:
    """Fail in one line, before any data or weights load, on what would otherwise fail minutes into a run: a
    missing input, an optional package the recipe needs, a hub model that is out of reach."""
    config.require_model_and_data()
    if config.deepspeed:
        require("deepspeed", needed_for=f"deepspeed: {config.deepspeed} (in the recipe or the flags)")
    if config.load_in_4bit:
        require("bitsandbytes", needed_for="load_in_4bit (QLoRA)")
    if "wandb" in config.report_to:
        require("wandb", needed_for="report_to: wandb")
    prepare_hub_model(config.model_name_or_path)
    if config.processor_name_or_path:
        prepare_hub_model(config.processor_name_or_path, what="processor")


FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
#: Settings only one task reads: the ranker's data is a ranking set scored pair by pair, with no answers to
#: cut at max_length, no chat layout or system prompt, and its held-out ranking measured at the end.
RANK_ONLY = tuple(name for name in FIELDS if name.startswith("rank_"))
SFT_ONLY = ("data_format", "image_root", "max_length", "system_prompt", "per_device_eval_batch_size", "eval_steps")
_TYPES = typing.get_type_hints(FinetuneConfig)


def _default_of(spec: dataclasses.Field) -> Any:
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


def load_config(recipe: str | Path | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """A configuration from a recipe YAML file (optional) with `overrides` applied on top.

    Raises
    ------
    ConfigError
        When the file is missing or not a mapping, a key is unknown, or a value has the wrong type.
    """
    values: dict[str, Any] = {}
    if recipe is not None:
        values.update(_read_recipe(Path(recipe)))
    values.update(overrides or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        where = f" in {recipe}" if recipe else ""
        raise ConfigError(f"unknown configuration key(s){where}: {', '.join(unknown)} (see gaea finetune train --help)")
    return FinetuneConfig(**{name: coerce(name, value) for name, value in values.items()})


def _read_recipe(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values, not {type(data).__name__}")
    return data


def coerce(name: str, value: Any) -> Any:
    """`value` (from YAML or a command-line string) converted to the declared type of field `name`."""
    hint = _TYPES[name]
    optional = _is_optional(hint)
    base = _non_none(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    try:
        return _convert(base, value)
    except (TypeError, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{name}: {value!r} is not a valid {_type_name(base)}") from error


def _convert(base: Any, value: Any) -> Any:
    origin = typing.get_origin(base)
    if origin is list:
        items = yaml.safe_load(value) if isinstance(value, str) and value.startswith("[") else value
        items = items.split(",") if isinstance(items, str) else items
        if not isinstance(items, list):
            raise TypeError("expected a list")
        return [str(item).strip() for item in items if str(item).strip()]
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if base is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
    if base is float:
        return float(value)
    return str(value)


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint) and typing.get_origin(hint) in (typing.Union, types.UnionType)


def _non_none(hint: Any) -> Any:
    if _is_optional(hint):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _type_name(base: Any) -> str:
    return getattr(base, "__name__", str(base))


def option_name(field_name: str) -> str:
    """The command-line spelling of a field: ``output_dir`` -> ``--output-dir``."""
    return "--" + field_name.replace("_", "-")


def add_config_arguments(parser: CommandParser) -> None:
    """One `--kebab-name VALUE` option per field (``--snake_name``, the recipe's spelling, works too), grouped,
    with its help text; unset options stay absent."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, spec in FIELDS.items():
        group_name = spec.metadata["group"]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(f"{group_name} options")
        default = _default_of(spec)
        groups[group_name].add_argument(
            option_name(name),
            dest=name,
            metavar=_type_name(_non_none(_TYPES[name])).upper(),
            default=argparse.SUPPRESS,
            help=f"{spec.metadata['help']} (default: {default!r})",
        )
        if "_" in name:
            parser.alias(f"--{name}", option_name(name), deprecated=False)
