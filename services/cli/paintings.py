"""``facestream paintings add``, and ``stylize --painting``: styles from any painting (the
arbitrary-style network, docs/style.md).

    facestream stylize CONTENT --painting PAINTING [--strength 1.0] -o OUT
    facestream paintings add PAINTING          # prints the style name painting:<id>
    facestream cameras style CAM painting:<id> # the stylizer paints the camera in it
"""

from __future__ import annotations

import argparse

from services.cli.common import read_bytes
from shared.settings import Settings


def paint_file(content_rgb, painting_bytes: bytes, strength: float, settings: Settings):
    """RGB uint8: ``content_rgb`` in the style of the painting file's bytes (checked first)."""
    from shared.images import max_pixels
    from shared.style.arbitrary import ArbitraryStylizer
    from shared.style.paintings import check_painting

    painting = check_painting(painting_bytes, max_pixels())
    stylizer = ArbitraryStylizer(settings.face.models_dir, settings.style.painting_side)
    return stylizer.stylize(content_rgb, stylizer.style_vector(painting), strength)


def cmd_paintings(args: argparse.Namespace, settings: Settings) -> None:
    """Upload a painting into the painting store; print the style name cameras can use."""
    from shared.images import max_pixels
    from shared.style.paintings import create_painting_store

    data = read_bytes(args.painting)
    style = create_painting_store(settings).add(data, max_pixels())
    print(style)


def register(commands: argparse._SubParsersAction) -> None:
    paintings = commands.add_parser(
        "paintings", help="upload a painting to use as a camera's style (painting:<id>)"
    )
    actions = paintings.add_subparsers(dest="action", required=True)
    actions.add_parser("add", help="check and store a painting").add_argument("painting")
    paintings.set_defaults(handler=cmd_paintings)
