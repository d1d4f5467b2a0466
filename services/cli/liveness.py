"""``facestream liveness-model train|evaluate|pixels|recapture``: training and measuring the liveness
models (docs/liveness.md). The training package is imported only when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.settings import LIVENESS_WEIGHTS, Settings


def register(commands: argparse._SubParsersAction) -> None:
    liveness = commands.add_parser("liveness-model", help="train and evaluate the liveness model")
    actions = liveness.add_subparsers(dest="action", required=True)
    folders_help = "FOLDER/live/*.mp4 and FOLDER/ATTACK_TYPE/*.mp4 instead of the project's data"
    train = actions.add_parser(
        "train", help="train the sequence model (about 10 minutes on 2 cores)"
    )
    train.add_argument("--out", type=Path, default=LIVENESS_WEIGHTS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--folders", type=Path, help=folders_help)
    train.add_argument(
        "--dev-folders", type=Path, help="held-out videos (same layout) to calibrate on"
    )
    evaluate = actions.add_parser(
        "evaluate",
        help="APCER/BPCER/ACER on held-out synthetic attacks, the real videos and stills",
    )
    evaluate.add_argument("--model", type=Path, default=LIVENESS_WEIGHTS)
    evaluate.add_argument("--folders", type=Path, help=folders_help)
    evaluate.add_argument("--report", type=Path, help="also write the figures as JSON here")
    evaluate.add_argument(
        "--windows-only", action="store_true", help="skip the per-track figures (several minutes)"
    )
    pixels = actions.add_parser(
        "pixels", help="the pixel model on the cached tracks of every source (slow: nice -n 10)"
    )
    pixels.add_argument(
        "step",
        choices=["extract", "train", "loso", "evaluate", "motion"],
        help="extract the tracks (MTCNN, cached) | train | leave one source out | evaluate "
        "| the motion model on the same tracks",
    )
    pixels.add_argument("--model", type=Path, default=None, help="evaluate: default the shipped")
    pixels.add_argument("--report", type=Path, default=None, help="also write the figures here")
    pixels.add_argument("--out", type=Path, default=None, help="train: where to save")
    pixels.add_argument("--epochs", type=int, default=60)
    pixels.add_argument("--low-res", type=float, default=0.4)
    pixels.add_argument("--photometric", type=float, default=0.0)
    pixels.add_argument("--seed", type=int, default=0)
    recapture = actions.add_parser(
        "recapture",
        help="the recapture-cue model, leave one source group out (cached tracks; nice -n 10)",
    )
    recapture.add_argument("step", choices=["loso", "train", "evaluate"])
    recapture.add_argument("--l2", type=float, nargs="+", default=[30.0])
    recapture.add_argument(
        "--ablate", action="store_true", help="loso: also the cues alone and the motion alone"
    )
    recapture.add_argument("--report", type=Path, default=None, help="also write the figures")
    recapture.add_argument("--out", type=Path, default=None, help="train: where to save")
    recapture.add_argument("--cues", nargs="+", default=None, help="only these cues' means")
    recapture.add_argument("--real-only", action="store_true", help="no synthetic attacks")
    recapture.add_argument(
        "--moire", action="store_true", help="the one-sided moire rule, set on live windows"
    )
    recapture.add_argument(
        "--nested", action="store_true", help="loso: also pick the one cue inside every fold"
    )
    recapture.add_argument(
        "--tracks",
        action="store_true",
        help="loso: also every track under the evidence policy, out of fold, and the motion model's",
    )
    liveness.set_defaults(handler=cmd_liveness)


def cmd_liveness(args: argparse.Namespace, settings: Settings) -> None:
    """Liveness: train the sequence model, and measure it (docs/liveness.md)."""
    if args.action == "pixels":
        from training.liveness import pixel_training

        pixel_training.run(args.step, args, settings)
        return
    if args.action == "recapture":
        from training.liveness import recapture_training

        recapture_training.run(args, settings)
        return
    from shared.face.detection import create_detector
    from training.liveness import commands

    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    data = settings.shared_data
    if args.action == "train":
        model = commands.train(data, args.out, args.seed, args.folders, args.dev_folders, detector)
        print(f"trained on {model.card['windows']} windows; wrote {args.out} and its card")
    else:
        _evaluate(args, settings, detector)


def _evaluate(args: argparse.Namespace, settings: Settings, detector) -> None:
    from shared.liveness.model import load_model
    from shared.liveness.pixels import load_any
    from training.liveness import commands

    data = settings.shared_data
    policy = settings.liveness.policy("evaluate")
    if getattr(load_any(args.model), "needs_cues", False):  # the recapture model
        from training.liveness import recapture_training

        report = recapture_training.evaluate_command(load_any(args.model), settings)
    elif getattr(load_any(args.model), "needs_chips", False):  # the pixel model
        from training.liveness import pixel_training

        report = pixel_training.evaluate(load_any(args.model), data, policy, detector)
    else:
        model = load_model(args.model)
        report = commands.evaluate(model, data, args.folders, detector)
        if not args.folders and not args.windows_only:
            from training.liveness.evaluation import per_track_report

            print("per track, under the evidence policy (FACESTREAM_LIVENESS__*):")
            report["per_track"] = per_track_report(model, policy, data, detector)
    if args.report:
        commands.save_report(report, args.report)
