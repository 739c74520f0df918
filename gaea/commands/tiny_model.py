"""`gaea tiny-model --out DIR`: build the tiny offline models (tests, demos, machines without the hub)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gaea.commands.parsing import CommandParser, command


def configure(parser: CommandParser) -> None:
    command(
        parser, run,
        description="Build, with no network, a tiny random-weight Qwen2.5-VL-family chat model (DIR/vlm) and a "
        "tiny CLIP image encoder (DIR/encoder). Their answers are gibberish: they exist so that every code "
        "path runs offline in seconds.",
        examples=["gaea tiny-model --out /tmp/gaea-tiny"],
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write the models into")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")


def run(args: argparse.Namespace) -> int:

    from gaea.models.tiny import build_tiny_encoder, build_tiny_vlm

    vlm = build_tiny_vlm(args.out / "vlm", seed=args.seed)
    encoder = build_tiny_encoder(args.out / "encoder", seed=args.seed)
    print(f"chat model:    {vlm}")
    print(f"image encoder: {encoder}")
    print(f"try: gaea ask --model {vlm} --image PHOTO.jpg \"Where was this photo taken?\"")
    return 0
