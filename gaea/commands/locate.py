"""`gaea locate`: predict where each photo was taken.

gaea locate photo.jpg other.jpg
gaea locate --model /tmp/gaea-tiny/vlm --gallery gallery/ --json photos/*.jpg
gaea locate --base-url http://127.0.0.1:8000/v1 --gallery gallery/ --ensemble 4 photo.jpg
gaea locate --base-url URL --gallery gallery/ --location-model geoclip/ --candidates lmm,neighbours,location-model \
    --ranker g3 photo.jpg

A photo that cannot be read is reported on stderr and the others still run; the exit code is then 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from gaea.commands.common import add_backend_arguments
from gaea.commands.context_args import add_context_arguments, assistant_from_args
from gaea.commands.parsing import CommandParser, command
from gaea.errors import GaeaError
from gaea.types import Prediction

log = logging.getLogger(__name__)


def configure(parser: CommandParser) -> None:
    command(parser, run, description="Predict where each photo was taken (optionally helped by a retrieval gallery).",
            examples=["gaea locate --gallery gallery/ --json photo.jpg",
                      "gaea locate --gallery gallery/ --location-model geoclip/ "
                      "--candidates lmm,neighbours,location-model --ranker g3 photo.jpg"])
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos to locate")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object a line: image, lat, lon, city, country, confidence, reasoning, "
                             "neighbours, candidates (ranked, with their scores) and ranker (lat/lon null when the "
                             "model gave no usable location)")
    add_backend_arguments(parser)
    add_context_arguments(parser, map_data=False)


def run(args: argparse.Namespace) -> int:
    assistant = assistant_from_args(args)
    failed = 0
    for image in args.images:
        try:
            prediction = assistant.locate(image)
        except GaeaError as error:
            failed += 1
            # Errors about the file already name it; others (e.g. the backend failing) get the name added.
            where = "" if str(image) in str(error) else f"{image}: "
            print(f"gaea locate: {where}{error}", file=sys.stderr)
            continue
        print(json.dumps(prediction_record(image, prediction), ensure_ascii=False) if args.json
              else prediction_line(image, prediction), flush=True)
    return 2 if failed else 0


def prediction_record(image: Path, prediction: Prediction) -> dict:
    """The --json line of one photo."""
    return {
        "image": str(image),
        "lat": prediction.lat,
        "lon": prediction.lon,
        "city": prediction.city,
        "country": prediction.country,
        "confidence": prediction.confidence,
        "reasoning": prediction.reasoning,
        "similar": [neighbour.__dict__ for neighbour in prediction.similar],
        "dissimilar": [neighbour.__dict__ for neighbour in prediction.dissimilar],
        "candidates": [asdict(candidate) for candidate in prediction.candidates],
        "ranker": prediction.ranker,
        "raw": prediction.raw,
    }


def prediction_line(image: Path, prediction: Prediction) -> str:
    """The human-readable line of one photo."""
    if prediction.point is None:
        answer = " ".join(prediction.raw.split())[:120]
        return f"{image}: no usable location in the model's answer ({answer!r})"
    place = f" {prediction.location}" if prediction.location else ""
    confidence = "" if prediction.confidence is None else f" (confidence {prediction.confidence:.2f})"
    chosen = ""
    if prediction.ranker and prediction.candidates:
        chosen = (f" [{prediction.candidates[0].source} candidate, ranked first of {len(prediction.candidates)} "
                  f"by {prediction.ranker}]")
    return f"{image}: {prediction.point}{place}{confidence}{chosen}"
