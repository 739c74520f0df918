"""`gaea ui`: the chat in the browser, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import os

from gaea.commands.parsing import CommandParser, command
from gaea.errors import BadInputError


def parse_auth(spec: str) -> tuple[str, str]:
    """`USER:PASS` as (user, password).

    Raises
    ------
    BadInputError
        When either half is empty.
    """
    user, sep, password = spec.partition(":")
    if not sep or not user or not password:
        raise BadInputError("--auth: expected USER:PASS with both parts non-empty")
    return user, password


def configure(parser: CommandParser) -> None:
    from gaea.commands.common import add_backend_arguments
    from gaea.commands.context_args import add_context_arguments

    command(
        parser, run,
        description="Start the GAEA chat in the browser: upload a photo, ask where it was taken and what is "
        "nearby, keep talking, and see the prediction on a map.",
        examples=["gaea ui --base-url http://127.0.0.1:8000/v1 --served-model gaea-geo --gallery gallery/ --overpass"],
    )
    add_backend_arguments(parser)
    add_context_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--auth", default=os.environ.get("GAEA_UI_AUTH"), metavar="USER:PASS",
        help="require this login (default: $GAEA_UI_AUTH, else none; the variable keeps it out of `ps`)",
    )
    parser.add_argument("--examples", default=None, metavar="DIR", help="offer the photos in DIR as examples")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(args.auth) if args.auth else None

    from gaea.commands.context_args import assistant_from_args
    from ui.app import build_app, example_photos, launch_kwargs

    example_photos(args.examples)  # a bad --examples folder fails before the model loads
    assistant = assistant_from_args(args)
    app = build_app(assistant, examples_dir=args.examples)
    print(f"GAEA chat on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    app.launch(**launch_kwargs(host=args.host, port=args.port, auth=auth, examples_dir=args.examples))
    return 0
