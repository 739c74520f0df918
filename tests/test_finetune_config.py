"""Fine-tuning configuration: recipes, command-line overrides, rejected keys and values, the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import FIELDS, FinetuneConfig, load_config
from gaea.cli import main as gaea_main
from gaea.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[1] / "finetune" / "recipes"
CONFIGS = Path(__file__).resolve().parents[1] / "finetune" / "configs"


def test_gaea_recipe_reproduces_the_published_hyperparameters():
    config = load_config(RECIPES / "gaea-qwen2.5-vl-7b.yaml")
    assert config.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.01)
    assert config.lora_target_modules == "all-linear-lm" and config.freeze_vision and config.train_merger
    assert (config.learning_rate, config.merger_learning_rate) == (1e-4, 1e-5)
    assert (config.num_train_epochs, config.lr_scheduler_type, config.warmup_ratio, config.weight_decay) == (
        1.0, "cosine", 0.03, 0.1,
    )
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps * 2 == 128  # two GPUs
    assert config.max_length == 1024
    assert (config.min_pixels, config.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)
    assert config.bf16 and config.torch_dtype == "bfloat16"
    assert (RECIPES.parent.parent / config.deepspeed).is_file()


def test_qlora_recipe_quantizes_and_keeps_the_global_batch():
    config = load_config(RECIPES / "qlora-qwen2.5-vl-7b-24gb.yaml")
    assert config.load_in_4bit and config.use_lora and config.bnb_4bit_quant_type == "nf4"
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 128  # one GPU
    assert config.gradient_checkpointing and config.deepspeed is None


def test_accelerate_configs_exist_for_each_launcher():
    import json

    import yaml

    kinds = {name: yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["distributed_type"]
             for name in ("ddp", "fsdp", "deepspeed_zero3")}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}
    assert json.loads((CONFIGS / "ds_zero3.json").read_text())["zero_optimization"]["stage"] == 3


def test_overrides_win_over_the_recipe_and_strings_are_typed():
    config = load_config(
        RECIPES / "gaea-qwen2.5-vl-7b.yaml",
        {"learning_rate": "2e-4", "lora_r": "8", "train_merger": "false", "report_to": "tensorboard,wandb",
         "max_pixels": "none"},
    )
    assert config.learning_rate == 2e-4 and config.lora_r == 8 and config.train_merger is False
    assert config.report_to == ["tensorboard", "wandb"] and config.max_pixels is None


def test_unknown_keys_are_rejected_by_name(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model_name_or_path: x\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(recipe)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora_r": "sixteen"}, "lora_r: 'sixteen' is not a valid int"),
        ({"bf16": "maybe"}, "bf16: 'maybe' is not a valid bool"),
        ({"load_in_4bit": True, "use_lora": False}, "load_in_4bit needs use_lora"),
        ({"eval_ratio": 1.5}, "eval_ratio"),
        ({"min_pixels": 1000, "max_pixels": 10}, "min_pixels 1000 is larger than max_pixels 10"),
        ({"data_format": "csv"}, "data_format 'csv'"),
        ({"learning_rate": None}, "learning_rate: a value is required"),
    ],
)
def test_bad_values_get_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_recipe_file_problems_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listing)


def test_every_field_has_help_and_a_group():
    assert all(spec.metadata["help"] and spec.metadata["group"] for spec in FIELDS.values())
    assert FinetuneConfig().lora_target_modules == "all-linear-lm"


def test_cli_reports_missing_inputs_and_unknown_flags(capsys):
    assert gaea_main(["finetune", "train", "--learning-rate", "1e-4"]) == 2
    assert "missing model_name_or_path, data" in capsys.readouterr().err
    assert gaea_main(["finetune", "train", "--no-such-flag", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaea finetune train: error: unrecognized arguments: --no-such-flag")
    assert len(err.splitlines()) == 1


def test_cli_help_lists_grouped_options(capsys):
    assert gaea_main(["finetune", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "adapter options" in out and "--lora-r" in out and "LoRA rank" in out


def test_settings_of_the_other_task_are_named_as_unused():
    rank = load_config(None, {"task": "rank", "max_length": 512, "system_prompt": "Be brief.", "rank_candidates": 8})
    assert rank.unused_settings() == ["max_length, system_prompt unused: --task rank trains on a ranking set "
                                      "(these apply to sft)"]
    sft = load_config(None, {"rank_candidates": 4, "rank_evidence_images": 0, "max_length": 512})
    assert sft.unused_settings() == ["rank_candidates, rank_evidence_images unused: task is sft (these apply to "
                                     "--task rank)"]
    assert load_config(RECIPES / "georanker-qwen2.5-vl.yaml").unused_settings() == []
    with pytest.raises(ConfigError, match="rank_evidence_images -1"):
        load_config(None, {"rank_evidence_images": -1})
