"""``facestream calibrate``: each encoder's verification calibration on LFW
(``shared/face/calibration*.json``; docs/models.md). Imports ``training`` only when it runs."""

from __future__ import annotations

import argparse

from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="fit each encoder's threshold, confidence curve and impostor tail on LFW and write "
        "its calibration file",
    )
    calibrate.add_argument("--detector", default=None, help="default: FACESTREAM_FACE__DETECTOR")
    calibrate.add_argument("--encoders", default="sface,dlib-resnet", help="comma-separated")
    calibrate.add_argument(
        "--dry-run", action="store_true", help="print the fitted figures, write nothing"
    )
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> None:
    from training.lfw_calibration import calibrate_encoders

    detector = args.detector or settings.face.detector
    encoders = args.encoders.split(",")
    calibrate_encoders(settings.shared_data, detector, encoders, write=not args.dry_run)
