"""`gaea gallery`: build a geotagged photo gallery for retrieval.

gaea gallery build --images photos/ --out gallery/
gaea gallery build --images photos.csv --out gallery/ --encoder google/siglip-base-patch16-224 --index flat
gaea gallery build --images hf:owner/geotagged-photos:train --out gallery/ --index ivfpq
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gaea.errors import ConfigError
from gaea.retrieval.index import INDEX_KINDS
from gaea.settings import get_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaea gallery", description="Build and inspect retrieval galleries.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="embed geotagged photos into a gallery (resumable: a rerun continues where it stopped)",
        epilog="example: gaea gallery build --images photos/ --out gallery/",
    )
    build.add_argument("--images", required=True,
                       help="a folder of photos with EXIF GPS, a .csv / .jsonl manifest (path, lat, lon), a dataset "
                            "folder made by `gaea data build`, or a Hugging Face dataset (hf:owner/name[:split])")
    build.add_argument("--out", required=True, type=Path, help="the gallery folder to write")
    build.add_argument("--encoder", help=f"image encoder, hub id or folder (default: {get_settings().encoder})")
    build.add_argument("--index", choices=INDEX_KINDS, default="auto",
                       help="auto: exact search below 100,000 photos, compressed IVF-PQ above (default: auto)")
    build.add_argument("--batch-size", type=int, default=32, metavar="N", help="photos per forward pass (32)")
    build.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    info = commands.add_parser("info", help="print a gallery's manifest")
    info.add_argument("gallery", type=Path)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "info":
        from gaea.retrieval.gallery import Gallery

        print(json.dumps(Gallery.load(args.gallery).manifest, indent=2, ensure_ascii=False))
        return 0
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {args.batch_size}")
    from gaea.retrieval.embedder import Embedder
    from gaea.retrieval.gallery import build_gallery

    embedder = Embedder(args.encoder, batch_size=args.batch_size, device=args.device)
    gallery = build_gallery(args.images, args.out, embedder, index_kind=args.index)
    skipped = len(gallery.manifest.get("skipped", []))
    print(f"gallery of {len(gallery)} photos ({gallery.manifest['index_kind']} index, {gallery.dim} dimensions) "
          f"written to {args.out}" + (f"; {skipped} unreadable photos skipped" if skipped else ""))
    return 0
