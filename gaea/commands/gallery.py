"""`gaea gallery`: build a geotagged photo gallery for retrieval.

gaea gallery build --images photos/ --out gallery/
gaea gallery build --images photos.csv --out gallery/ --encoder google/siglip-base-patch16-224 --index flat
gaea gallery build --images hf:owner/geotagged-photos:train --out gallery/ --index ivfpq
gaea gallery build --images data/city --out gallery/     # the photos of a `gaea data build` dataset
gaea gallery build --images photos.csv --out gallery/ --workers 2   # a Dask cluster of 2 local processes
gaea gallery merge part-a/ part-b/ --out gallery/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gaea.commands.common import add_cluster_arguments
from gaea.commands.parsing import CommandParser, add_command, add_commands
from gaea.errors import ConfigError
from gaea.retrieval.index import INDEX_KINDS
from gaea.settings import get_settings
from gaea.sources import SPEC_HELP, open_source

INDEX_HELP = ("auto: exact search below 100,000 photos, compressed IVF-PQ in memory above; ivf-disk: inverted "
              "lists on disk, a few MB of memory at any size, slower dissimilar search (default: auto)")


def configure(parser: CommandParser) -> None:
    commands = add_commands(parser)
    build = add_command(
        commands, "build", run_build,
        help="embed geotagged photos into a gallery (resumable: a rerun continues where it stopped)",
        examples=["gaea gallery build --images photos/ --out gallery/",
                  "gaea gallery build --images photos.csv --out gallery/ --scheduler tcp://10.0.0.5:8786"],
    )
    build.add_argument("--images", required=True, help=SPEC_HELP)
    build.add_argument("--out", required=True, type=Path, help="the gallery folder to write")
    build.add_argument("--encoder", help=f"image encoder, hub id or folder (default: {get_settings().encoder})")
    build.add_argument("--index", choices=INDEX_KINDS, default="auto", help=INDEX_HELP)
    build.add_argument("--batch-size", type=int, default=32, metavar="N", help="photos per forward pass (32)")
    build.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    build.add_argument("--overwrite", action="store_true", help="delete an earlier gallery in --out and start afresh")
    add_cluster_arguments(build)
    merge = add_command(
        commands, "merge", run_merge,
        help="merge galleries built elsewhere with the same encoder into one (as if built in one go)",
        examples=["gaea gallery merge part-a/ part-b/ --out gallery/"],
    )
    merge.add_argument("parts", nargs="+", type=Path, help="gallery folders, in the order their photos go")
    merge.add_argument("--out", required=True, type=Path, help="the merged gallery folder to write")
    merge.add_argument("--index", choices=INDEX_KINDS, default="auto", help=INDEX_HELP)
    merge.add_argument("--overwrite", action="store_true", help="delete an earlier gallery in --out and start afresh")
    info = add_command(commands, "info", run_info, help="print a gallery's manifest",
                       examples=["gaea gallery info gallery/"])
    info.add_argument("gallery", type=Path, help="a folder made by `gaea gallery build`")


def run_info(args: argparse.Namespace) -> int:
    from gaea.retrieval.gallery import Gallery

    print(json.dumps(Gallery.load(args.gallery).manifest, indent=2, ensure_ascii=False))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from gaea.retrieval.gallery import merge_galleries

    gallery = merge_galleries(args.parts, args.out, index_kind=args.index, overwrite=args.overwrite)
    print(f"gallery of {len(gallery)} photos from {len(args.parts)} parts ({gallery.manifest['index_kind']} index) "
          f"written to {args.out}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {args.batch_size}")
    from gaea.distributed import cluster
    from gaea.retrieval.embedder import Embedder
    from gaea.retrieval.gallery import build_gallery, skip_counts

    source = open_source(args.images)  # a bad input fails before the encoder loads
    embedder = Embedder(args.encoder, batch_size=args.batch_size, device=args.device)
    with cluster(args.scheduler, args.workers) as client:
        gallery = build_gallery(source, args.out, embedder, index_kind=args.index, overwrite=args.overwrite,
                                client=client)
    skipped = gallery.manifest.get("skipped", [])
    print(f"gallery of {len(gallery)} photos ({gallery.manifest['index_kind']} index, {gallery.dim} dimensions) "
          f"written to {args.out}" + (f"; {len(skipped)} photos skipped ({skip_counts(skipped)}), listed in "
                                      f"{args.out / 'manifest.json'}" if skipped else ""))
    return 0
