"""The ``facestream`` command: run services, the embedded pipeline, and manage cameras, people,
models; train and measure the models (those commands import ``training`` only when they run).

A table of command modules, one per group; each ``register``s its subcommands with a handler
``(args, settings) -> None``. A handler raises ``CliError`` for a user's mistake; ``main``
prints it (and the library's own user-facing errors) without a traceback and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from services.cli import (
    alignment,
    calibrate,
    cameras,
    faces,
    liveness,
    models,
    paintings,
    serve,
    similarity,
    style,
)
from services.cli.common import CliError
from shared.errors import ProcessingError
from shared.face.model_files import ModelFileError
from shared.gallery.base import GalleryError
from shared.liveness import LivenessModelError
from shared.settings import get_settings
from shared.style.vgg import StyleModelError

COMMANDS = (
    serve,
    cameras,
    faces,
    models,
    style,
    paintings,
    similarity,
    liveness,
    alignment,
    calibrate,
)
"""Command groups in the order ``facestream --help`` lists them."""

USER_ERRORS = (
    CliError,
    ProcessingError,  # an image that cannot be decoded, or has no usable face
    GalleryError,  # e.g. a gallery of another encoder's encodings
    ModelFileError,  # a missing or damaged model file (the message names the fix)
    StyleModelError,
    LivenessModelError,
)
"""Errors that are the user's to fix; anything else is a bug and keeps its traceback."""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="facestream", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    for group in COMMANDS:
        group.register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in style.OWN_OPTIONS:  # options of its own, parsed by its module
        return importlib.import_module(style.OWN_OPTIONS[argv[0]]).main(argv[1:])
    args = parser().parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args, settings)
    except USER_ERRORS as error:
        print(f"facestream: error: {error}", file=sys.stderr)
        return 2
    return 0
