"""`gaea ask`: answer one question about one photo.

gaea ask --image photo.jpg "Where was this photo taken?"
gaea ask --model /tmp/gaea-tiny/vlm --image photo.jpg --json "Which country is this?"
gaea ask --base-url http://127.0.0.1:8000/v1 --image photo.jpg "What is nearby?"
gaea ask --gallery gallery/ --osm-file city.osm.pbf --image photo.jpg "Is there a train station nearby?"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaea.commands.common import add_backend_arguments, params_from_args
from gaea.commands.context_args import add_context_arguments, assistant_from_args
from gaea.commands.parsing import CommandParser, command
from gaea.errors import BadInputError, ConfigError
from gaea.images import load_image


def configure(parser: CommandParser) -> None:
    command(parser, run, description="Answer one question about one photo with a vision-language model.",
            examples=['gaea ask --image photo.jpg "Where was this photo taken?"'])
    parser.add_argument("question", help="the question about the photo")
    parser.add_argument("--image", required=True, type=Path, help="the photo (JPEG, PNG, WebP, HEIC, ...)")
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print the answer while it is generated (default: on when the output is a terminal)",
    )
    parser.add_argument("--json", action="store_true", help='print {"image", "question", "answer", "model"}')
    add_backend_arguments(parser)
    add_context_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.json and args.stream:
        raise ConfigError("--stream prints the answer as it comes; --json prints it whole at the end: choose one")
    question = args.question.strip()
    if not question:
        raise BadInputError("the question is empty: ask something about the photo")
    # The image is checked before the model loads, so a bad file fails in a second, not after a minute.
    image = load_image(args.image)
    params = params_from_args(args)
    assistant = assistant_from_args(args)
    answer = assistant.chat([], image, question, params=params)
    stream = sys.stdout.isatty() if args.stream is None else args.stream
    if args.json:
        record = {"image": str(args.image), "question": question, "answer": "".join(answer),
                  "model": assistant.backend.name}
        print(json.dumps(record, ensure_ascii=False))
    elif stream:
        for piece in answer:
            print(piece, end="", flush=True)
        print()
    else:
        print("".join(answer))
    return 0
