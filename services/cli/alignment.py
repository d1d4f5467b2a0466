"""``facestream alignment derive-template|evaluate``: the alignment template the detector's chips
follow (docs/detection.md). The training package is imported only when a command runs."""

from __future__ import annotations

import argparse

from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    alignment = commands.add_parser(
        "alignment", help="derive and measure the alignment template against dlib's chips"
    )
    actions = alignment.add_subparsers(dest="action", required=True)
    derive = actions.add_parser(
        "derive-template", help="fit the template on non-DevTest LFW people and write it"
    )
    derive.add_argument("--faces", type=int, default=400, help="LFW images for the template")
    evaluate = actions.add_parser("evaluate", help="measure the chips on held-out DevTest people")
    evaluate.add_argument("--faces", type=int, default=150, help="held-out LFW images")
    for action in (derive, evaluate):
        action.add_argument("--seed", type=int, default=0)
    alignment.set_defaults(handler=cmd_alignment)


def cmd_alignment(args: argparse.Namespace, settings: Settings) -> None:
    from training import alignment

    if args.action == "derive-template":
        alignment.derive(settings.shared_data, args.faces, args.seed)
    else:
        alignment.evaluate(settings.shared_data, args.faces, args.seed)
