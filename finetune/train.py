"""The training run: load, prepare, train with transformers' Trainer, save the adapter.

`main(config)` is separate from the command-line parser so tests and scripts call it directly.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from finetune.collator import VisionChatCollator
from finetune.config import FinetuneConfig, preflight
from finetune.data import load_samples, split_train_eval
from finetune.model import is_merger, load_model, load_processor, upcast_trainable
from gaea.errors import ConfigError
from gaea.io import atomic_write_text
from gaea.runs import RunLock

log = logging.getLogger(__name__)

FINAL_DIR = "final"


@dataclass
class TrainResult:
    """What a run produced: the final adapter (or model) folder, its step count and its metrics."""

    output_dir: Path
    final_dir: Path
    global_step: int
    train_loss: float
    eval_loss: float | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)


class GaeaTrainer(Trainer):
    """Trainer whose optimizer gives the merger / projector its own learning rate."""

    def __init__(self, *args: Any, merger_learning_rate: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.merger_learning_rate = merger_learning_rate

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is None and self.merger_learning_rate is not None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(self.parameter_groups(opt_model), **optimizer_kwargs)
        return super().create_optimizer(model)

    def parameter_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Trainable parameters in four groups: (merger or not) x (weight decay or not)."""
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                groups.setdefault((is_merger(name), name in decay), []).append(param)
        return [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if decays else 0.0,
                **({"lr": self.merger_learning_rate} if merger else {}),
            }
            # the plain groups first: the Trainer logs the learning rate of group 0
            for (merger, decays), params in sorted(groups.items(), key=lambda item: item[0])
        ]


def training_arguments(config: FinetuneConfig, *, has_eval: bool) -> TrainingArguments:
    """transformers' TrainingArguments for `config`."""
    report_to = [name for name in config.report_to if name != "none"] or "none"
    return TrainingArguments(
        output_dir=config.output_dir,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=config.optim,
        bf16=_bf16_available(config),
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=(config.eval_steps or config.save_steps) if has_eval else None,
        report_to=report_to,
        run_name=config.run_name,
        deepspeed=config.deepspeed,
        dataloader_num_workers=config.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=config.seed,
        remove_unused_columns=False,  # the collator needs whole samples, not model-signature columns
        label_names=["labels"],
    )


def _bf16_available(config: FinetuneConfig) -> bool:
    if not config.bf16:
        return False
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    log.info("bf16 mixed precision needs a GPU that supports it; training in the weights' dtype")
    return False


def resolve_checkpoint(config: FinetuneConfig) -> str | None:
    """The checkpoint to resume from: a folder, the newest in output_dir for 'last', or None."""
    wanted = config.resume_from_checkpoint
    if not wanted:
        return None
    if wanted == "last":
        last = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
        if last is None:
            log.info("no checkpoint in %s yet; starting from step 0", config.output_dir)
        return last
    if not Path(wanted).is_dir():
        raise ConfigError(f"resume_from_checkpoint {wanted!r}: no such checkpoint folder")
    return wanted


def build_datasets(config: FinetuneConfig) -> tuple[Any, Any]:
    """Training and held-out datasets as configured."""
    options = {
        "data_format": config.data_format,
        "image_root": config.image_root,
        "system_prompt": config.system_prompt,
        "max_samples": config.max_samples,
    }
    train = load_samples(config.data, **options)
    if config.eval_data:
        return train, load_samples(config.eval_data, **options)
    return split_train_eval(train, eval_ratio=config.eval_ratio, seed=config.seed)


def main(config: FinetuneConfig, *, callbacks: list[TrainerCallback] | None = None) -> TrainResult:
    """Train as `config` says; returns where the final adapter is and how the run went."""
    preflight(config)
    if config.task == "rank":
        from finetune.rank import train_ranker

        return train_ranker(config, callbacks=callbacks)
    set_seed(config.seed)
    train_set, eval_set = build_datasets(config)
    log.info("training on %d samples%s", len(train_set), f", evaluating on {len(eval_set)}" if eval_set else "")
    # The arguments come before the model: with DeepSpeed ZeRO-3 they make from_pretrained load sharded.
    args = training_arguments(config, has_eval=eval_set is not None)
    # One launch into output_dir at a time: its main process holds the lock for the ranks it leads.
    with RunLock(config.output_dir) if args.process_index == 0 else contextlib.nullcontext():
        return _train(config, args, train_set, eval_set, callbacks)


def _train(config: FinetuneConfig, args: TrainingArguments, train_set: Any, eval_set: Any,
           callbacks: list[TrainerCallback] | None) -> TrainResult:
    processor = load_processor(config)
    model = load_model(config)
    if config.use_lora and (args.bf16 or args.fp16):
        upcast_trainable(model)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.process_index == 0:
        atomic_write_text(output_dir / "finetune_config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer = GaeaTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=VisionChatCollator(processor, max_length=config.max_length),
        processing_class=processor,
        callbacks=callbacks,
        merger_learning_rate=config.merger_learning_rate if config.train_merger else None,
    )
    output = trainer.train(resume_from_checkpoint=resolve_checkpoint(config))
    final_dir = output_dir / FINAL_DIR
    trainer.save_model(str(final_dir))  # the adapter (or model) with the processor beside it
    eval_loss = trainer.evaluate()["eval_loss"] if eval_set is not None else None
    log.info("saved the %s to %s", "adapter" if config.use_lora else "model", final_dir)
    return TrainResult(
        output_dir=output_dir,
        final_dir=final_dir,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss),
        eval_loss=eval_loss,
        log_history=list(trainer.state.log_history),
    )
