"""`gaea ui`: the chat in the browser, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import os

from gaea.commands.parsing import CommandParser, command, warn
from gaea.errors import BadInputError, ConfigError
from ui.security import KEEP_UPLOADS_S, is_loopback


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
    parser.add_argument(
        "--allow-public", action="store_true",
        help="listen on a non-loopback --host without --auth (anyone who reaches the address can use the model)",
    )
    parser.add_argument("--examples", default=None, metavar="DIR", help="offer the photos in DIR as examples")
    parser.add_argument(
        "--keep-uploads-min", type=float, default=KEEP_UPLOADS_S / 60, metavar="MIN",
        help="delete uploaded photos once they are this old (default: %(default)g minutes)",
    )


def check_exposure(args: argparse.Namespace, *, auth: tuple[str, str] | None) -> None:
    """Refuse a non-loopback --host without a login unless --allow-public; with it, warn loudly on stderr.

    Raises
    ------
    ConfigError
        When the app would listen beyond this machine with no login and --allow-public is not given.
    """
    if auth is not None or is_loopback(args.host):
        return
    exposure = (f"--host {args.host} makes the chat reachable from other machines, and without --auth anyone who "
                "reaches it can use the model and upload files")
    if not args.allow_public:
        raise ConfigError(f"{exposure}: add --auth USER:PASS (or $GAEA_UI_AUTH), or --allow-public if you mean it")
    warn(args, f"{exposure.upper()} (--allow-public)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(args.auth) if args.auth else None
    check_exposure(args, auth=auth)
    if args.keep_uploads_min <= 0:
        raise ConfigError(f"--keep-uploads-min {args.keep_uploads_min:g}: must be positive")

    from gaea.commands.context_args import assistant_from_args
    from ui.app import build_app, example_photos, launch_kwargs

    example_photos(args.examples)  # a bad --examples folder fails before the model loads
    assistant = assistant_from_args(args)
    app = build_app(assistant, examples_dir=args.examples, keep_uploads_s=max(1, round(args.keep_uploads_min * 60)))
    print(f"GAEA chat on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    app.launch(**launch_kwargs(host=args.host, port=args.port, auth=auth, examples_dir=args.examples))
    return 0
