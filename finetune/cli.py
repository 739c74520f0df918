"""`gaea finetune`: train with a recipe, merge an adapter, convert an old adapter.

    gaea finetune --config finetune/recipes/gaea-qwen2.5-vl-7b.yaml --data data/arezzo --output_dir runs/a
    gaea finetune merge --base Qwen/Qwen2.5-VL-7B-Instruct --adapter runs/a/final --out models/gaea-merged
    gaea finetune convert-adapter --adapter GAEA-7B --out GAEA-7B-converted
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from finetune.config import add_config_arguments, load_config

log = logging.getLogger(__name__)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaea finetune",
        description="LoRA / QLoRA fine-tuning of a vision-language model. Values come from the recipe "
        "(--config), then from the flags. Subcommands: `gaea finetune merge`, `gaea finetune convert-adapter`.",
    )
    parser.add_argument("--config", metavar="RECIPE.yaml", help="recipe file with the default values")
    add_config_arguments(parser)
    return parser


def merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaea finetune merge", description="merge a LoRA adapter into its base model")
    parser.add_argument("--base", required=True, help="base model (hub id or folder)")
    parser.add_argument("--adapter", required=True, help="adapter folder (e.g. RUN/final)")
    parser.add_argument("--out", required=True, help="folder for the merged model (must not exist or be empty)")
    parser.add_argument("--dtype", default="bfloat16", help="dtype of the merged weights (default: bfloat16)")
    return parser


def convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaea finetune convert-adapter",
        description="rewrite an adapter saved with the old Qwen-VL key names (model.layers.*) in the current layout",
    )
    parser.add_argument("--adapter", required=True, help="adapter folder with old key names (e.g. GAEA-7B)")
    parser.add_argument("--out", required=True, help="folder for the converted adapter")
    return parser


def main(argv: list[str]) -> int:
    """Dispatch `gaea finetune [merge|convert-adapter] ...`; returns the exit code."""
    if argv and argv[0] == "merge":
        return _merge(merge_parser().parse_args(argv[1:]))
    if argv and argv[0] == "convert-adapter":
        return _convert(convert_parser().parse_args(argv[1:]))
    args = vars(train_parser().parse_args(argv))
    recipe = args.pop("config")
    config = load_config(recipe, args)
    logging.getLogger("finetune").setLevel(logging.INFO)
    from finetune.train import main as train

    result = train(config)
    summary: dict[str, Any] = {"step": result.global_step, "train_loss": round(result.train_loss, 4)}
    if result.eval_loss is not None:
        summary["eval_loss"] = round(result.eval_loss, 4)
    print(f"adapter saved to {result.final_dir} " + " ".join(f"{key}={value}" for key, value in summary.items()))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from finetune.merge import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, dtype=args.dtype)
    print(f"merged model saved to {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gaea.models.adapters import convert_legacy_adapter

    count = convert_legacy_adapter(args.adapter, args.out)
    print(f"converted adapter saved to {args.out} ({count} keys renamed)")
    return 0
