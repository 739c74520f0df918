"""`gaea locmodel`: train and evaluate location models on galleries made by `gaea gallery build`.

    gaea locmodel train --kind geoclip --gallery gallery/ --out runs/geoclip --epochs 10
    gaea locmodel train --kind geoclip --negatives semivariogram --gallery gallery/ --out runs/geoclip-sv
    gaea locmodel train --config recipe.yaml --gallery gallery/ --out runs/s2
    gaea locmodel eval --model runs/s2 --gallery heldout-gallery/ --decoding beam --beam-width 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gaea.commands.parsing import CommandParser, add_command, add_commands

KINDS = ("geoclip", "s2", "shdd")


def configure(parser: CommandParser) -> None:
    commands = add_commands(parser)
    train = add_command(
        commands, "train", run_train,
        help="train a location model on a gallery's embeddings and coordinates (resumable)",
        description="Train a location model (geoclip, s2 or shdd) on the embeddings and coordinates of a gallery, "
                    "holding out a seeded share for evaluation. A rerun with the same settings resumes from the "
                    "newest checkpoint in --out; other settings there are refused (or --overwrite).",
        examples=["gaea locmodel train --kind geoclip --gallery gallery/ --out runs/geoclip",
                  "gaea locmodel train --kind geoclip --negatives semivariogram --gallery gallery/ --out runs/sv",
                  "gaea locmodel train --kind s2 --config recipe.yaml --gallery gallery/ --out runs/s2"],
    )
    train.add_argument("--kind", choices=KINDS, help="geoclip (GeoCLIP), s2 (GeoToken's S2 cells) or shdd (LocDiff's "
                                                     "spherical harmonics); default: the config's, else geoclip")
    train.add_argument("--gallery", type=Path, metavar="DIR", help="gallery folder made by `gaea gallery build`")
    train.add_argument("--out", type=Path, metavar="DIR", help="where the model, checkpoints and logs go")
    train.add_argument("--config", type=Path, metavar="YAML",
                       help="settings file: any option below by its name with underscores, and `model:` with the "
                            "kind's hyperparameters")
    train.add_argument("--epochs", type=int, metavar="N", help="passes over the training photos (10)")
    train.add_argument("--batch-size", type=int, metavar="N", help="photos per step (256)")
    train.add_argument("--learning-rate", type=float, metavar="LR", help="peak AdamW learning rate (3e-4)")
    train.add_argument("--held-out", type=float, metavar="FRACTION",
                       help="share of the gallery kept out of training and evaluated (0.1)")
    train.add_argument("--seed", type=int, help="seed of the initial weights, batch order and held-out split (0)")
    train.add_argument("--checkpoint-every", type=int, metavar="STEPS", help="steps between checkpoints (500)")
    train.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the work of an earlier run in --out and start afresh (default: resume it)")
    geoclip = train.add_argument_group("geoclip")
    geoclip.add_argument("--negatives", choices=("plain", "semivariogram"),
                         help="semivariogram: weight hard negatives up and drop false ones by the fitted "
                              "semivariogram of the training photos (writes semivariogram.png); default plain")
    geoclip.add_argument("--gps-gallery", type=Path, metavar="CSV",
                         help="candidate places for prediction, a CSV with LAT, LON columns such as GeoCLIP's "
                              "coordinates_100K.csv (default: the training photos' places)")
    geoclip.add_argument("--queue-size", type=int, metavar="N", help="GPS negatives kept from earlier batches (4096)")

    evaluate = add_command(
        commands, "eval", run_eval,
        help="distance accuracy of a location model on a gallery",
        description="Accuracy at 1 / 25 / 200 / 750 / 2,500 km, median error and GeoScore of a location model's "
                    "best candidate for every photo of a gallery (the metrics of `gaea eval geo`).",
        examples=["gaea locmodel eval --model runs/geoclip --gallery test-gallery/",
                  "gaea locmodel eval --model runs/s2 --gallery gallery/ --only-held-out --decoding greedy"],
    )
    evaluate.add_argument("--model", required=True, type=Path, metavar="DIR",
                          help="a model made by `gaea locmodel train`")
    evaluate.add_argument("--gallery", required=True, type=Path, metavar="DIR", help="gallery folder to evaluate on")
    evaluate.add_argument("--only-held-out", action="store_true",
                          help="only the photos the training run held out (the gallery must be the one it trained on)")
    evaluate.add_argument("--out", type=Path, metavar="JSON", help="also write the metrics to this file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    decoding = evaluate.add_argument_group("decoding (s2, shdd)")
    decoding.add_argument("--decoding", choices=("greedy", "beam", "sample"), help="s2: how to decode the cells (beam)")
    decoding.add_argument("--beam-width", type=int, metavar="B", help="s2: beam width (4)")
    decoding.add_argument("--samples", type=int, metavar="N",
                          help="s2 sample / shdd diffusion: draws per photo (16 / 4)")
    decoding.add_argument("--temperature", type=float, help="s2 sample: sampling temperature (1.0)")
    decoding.add_argument("--steps", type=int, metavar="N", help="shdd diffusion: DDIM steps (10)")
    decoding.add_argument("--start", type=float, metavar="SHARE",
                          help="shdd diffusion: share of the reverse process run, from the noised regression prior "
                               "(1.0: all of it, from pure noise)")
    evaluate.add_argument("--gps-gallery", type=Path, metavar="CSV",
                          help="geoclip: predict over these places (a CSV with LAT, LON) instead of the model's")


def run_train(args: argparse.Namespace) -> int:
    from finetune.location import load_train_config, train_location_model

    overrides = {name: getattr(args, name) for name in (
        "kind", "epochs", "batch_size", "learning_rate", "held_out", "seed", "checkpoint_every", "device",
        "negatives", "queue_size")}
    overrides.update(gallery=_text(args.gallery), out=_text(args.out), gps_gallery=_text(args.gps_gallery))
    config = load_train_config(args.config, overrides)
    result = train_location_model(config, overwrite=args.overwrite)
    held = result.metrics["held_out"]
    summary = f"; held-out {_line(held)}" if held else ""
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    print(f"{config.kind} model saved to {result.out} after {result.steps} steps{resumed}{summary}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from finetune.location import LocationData
    from gaea.errors import BadInputError
    from gaea.location import evaluate_predictions, load_location_model, read_gps_gallery

    model = load_location_model(args.model)
    data = LocationData.from_gallery(args.gallery)
    rows = np.arange(len(data.embeddings))
    if args.only_held_out:
        rows = _held_out_rows(args.model, data)
    if args.gps_gallery:
        if model.kind != "geoclip":
            raise BadInputError(f"--gps-gallery applies to geoclip models; {args.model} is {model.kind}")
        model.set_gps_gallery(*read_gps_gallery(args.gps_gallery))
    decoding = ("decoding", "beam_width", "samples", "temperature", "steps", "start")
    options = {name: getattr(args, name) for name in decoding if getattr(args, name) is not None}
    metrics = evaluate_predictions(model, np.asarray(data.embeddings[rows]), data.coords[rows], **options)
    report = {"model": str(args.model), "kind": model.kind, "gallery": str(args.gallery),
              "only_held_out": args.only_held_out, "options": options, **metrics}
    if args.out:
        from gaea.io import atomic_write_json

        atomic_write_json(args.out, report)
    print(json.dumps(report, ensure_ascii=False) if args.json else f"{model.kind} on {args.gallery}: {_line(metrics)}")
    return 0


def _held_out_rows(model_dir: Path, data: Any) -> Any:
    import numpy as np

    from gaea.errors import BadInputError

    path = model_dir / "split.json"
    if not path.is_file():
        raise BadInputError(f"{model_dir}: no split.json, so its held-out photos are unknown (drop --only-held-out)")
    split = json.loads(path.read_text(encoding="utf-8"))
    if split["data"] != data.fingerprint():
        raise BadInputError(f"--only-held-out: {data.source} is not the gallery {model_dir} was trained on")
    rows = np.asarray(split["held_out_rows"], dtype=np.int64)
    if len(rows) == 0:
        raise BadInputError(f"{model_dir} held no photos out (trained with held_out 0)")
    return rows


def _line(metrics: dict[str, Any]) -> str:
    accuracy = " / ".join(f"{value:.1f}" for value in metrics["accuracy"].values())
    median = "n/a" if metrics["median_km"] is None else f"{metrics['median_km']:,.0f} km"
    return (f"{metrics['count']} photos, accuracy at {' / '.join(metrics['accuracy'])}: {accuracy} %, "
            f"median {median}, GeoScore {metrics['geoscore']:,.0f}")


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)
