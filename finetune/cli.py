"""`gaea finetune train | merge | convert-adapter`.

    gaea finetune train --config finetune/recipes/gaea-qwen2.5-vl-7b.yaml --data data/arezzo --output-dir runs/a
    gaea finetune train --task rank --config finetune/recipes/georanker-qwen2.5-vl.yaml --data data/ranking
    gaea finetune merge --model Qwen/Qwen2.5-VL-7B-Instruct --adapter runs/a/final --out models/gaea-merged
    gaea finetune convert-adapter --adapter GAEA-7B --out GAEA-7B-converted
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from finetune.config import FIELDS, add_config_arguments, load_config, preflight
from gaea.commands.parsing import CommandParser, add_command, add_commands, warn

log = logging.getLogger(__name__)


def configure(parser: CommandParser) -> None:
    commands = add_commands(parser)
    train = add_command(
        commands, "train", _train,
        help="train a LoRA / QLoRA adapter (or the full model) with a recipe",
        description="LoRA / QLoRA fine-tuning of a vision-language model. Values come from the recipe "
        "(--config), then from the flags.",
        examples=["gaea finetune train --config finetune/recipes/qlora-qwen2.5-vl-7b-24gb.yaml --data data/city "
                  "--output-dir runs/city",
                  "gaea finetune train --task rank --config finetune/recipes/georanker-qwen2.5-vl.yaml "
                  "--data data/ranking --output-dir runs/ranker"],
    )
    train.add_argument("--config", metavar="RECIPE.yaml", help="recipe file with the default values")
    add_config_arguments(train)
    merge = add_command(
        commands, "merge", _merge, help="merge a LoRA adapter into its base model",
        examples=["gaea finetune merge --model Qwen/Qwen2.5-VL-7B-Instruct --adapter runs/city/final "
                  "--out models/gaea-city"],
    )
    merge.add_argument("--model", required=True, help="base model (hub id or folder)")
    merge.alias("--base", "--model")
    merge.add_argument("--adapter", required=True, help="adapter folder (e.g. RUN/final)")
    merge.add_argument("--out", required=True, help="folder for the merged model (must not exist or be empty)")
    merge.add_argument("--dtype", default="bfloat16", help="dtype of the merged weights (default: bfloat16)")
    convert = add_command(commands, "convert-adapter", _convert, help="rewrite an adapter saved with the old Qwen-VL "
                          "key names (model.layers.*) in the current layout",
                          examples=["gaea finetune convert-adapter --adapter GAEA-7B --out GAEA-7B-converted"])
    convert.add_argument("--adapter", required=True, help="adapter folder with old key names (e.g. GAEA-7B)")
    convert.add_argument("--out", required=True, help="folder for the converted adapter")
    parser.legacy_form(
        lambda argv: ["train", *argv] if argv[0].startswith("-") else None,
        "`gaea finetune --config ...` without a command is deprecated and will be removed; "
        "use `gaea finetune train --config ...`",
    )


def _train(args: argparse.Namespace) -> int:
    # Options left unset are absent from `args`, so the recipe's values stand.
    overrides = {name: value for name, value in vars(args).items() if name in FIELDS}
    config = load_config(args.config, overrides)
    for sentence in config.unused_settings():
        warn(args, sentence)
    preflight(config)  # before the slow imports of the training stack
    logging.getLogger("finetune").setLevel(logging.INFO)
    from finetune.train import main as train

    result = train(config)
    summary: dict[str, Any] = {"step": result.global_step, "train_loss": round(result.train_loss, 4)}
    if result.eval_loss is not None:
        summary["eval_loss"] = round(result.eval_loss, 4)
    what = "ranker" if config.task == "rank" else "adapter"
    print(f"{what} saved to {result.final_dir} " + " ".join(f"{key}={value}" for key, value in summary.items()))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from finetune.merge import merge_adapter

    out = merge_adapter(args.model, args.adapter, args.out, dtype=args.dtype)
    print(f"merged model saved to {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gaea.models.adapters import convert_legacy_adapter

    count = convert_legacy_adapter(args.adapter, args.out)
    print(f"converted adapter saved to {args.out} ({count} keys renamed)")
    return 0
