"""``facestream stylize|style-train|style-accelerated|layers``: style transfer on one image,
training a network (here, or on a GPU machine), and what a network's layers learn. Training
code is imported only when those commands run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from services.cli.common import CliError, progress_bar, read_bytes
from shared.settings import Settings

OWN_OPTIONS = {
    "layers": "training.style.visualize",
    "style-accelerated": "training.style.accelerated",
}
"""Commands whose options their module parses (``main(argv)``): ``facestream layers --help``."""


def register(commands: argparse._SubParsersAction) -> None:
    stylize = commands.add_parser(
        "stylize", help="style one image: Gatys against a STYLE image, or a trained --network"
    )
    stylize.add_argument("content")
    stylize.add_argument("style", nargs="?", help="style image (Gatys optimisation)")
    stylize.add_argument("--network", help="name of a trained feed-forward network instead")
    stylize.add_argument("--painting", help="any painting, by the arbitrary-style network")
    stylize.add_argument("--strength", type=float, default=1.0, help="--painting: 0..1")
    stylize.add_argument("-o", "--output", type=Path, required=True)
    stylize.add_argument("--size", type=int, default=256, help="Gatys: longest side, pixels")
    stylize.add_argument("--iterations", type=int, default=200)
    stylize.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    stylize.add_argument("--alpha", type=float, default=1e5, help="content weight")
    stylize.add_argument("--beta", type=float, default=40.0, help="style weight")
    stylize.add_argument("--tv-weight", type=float, default=0.0)
    stylize.add_argument("--init", choices=["content", "noise"], default="content")
    stylize.add_argument("--seed", type=int, default=0)
    stylize.set_defaults(handler=cmd_stylize)

    train = commands.add_parser(
        "style-train", help="train a feed-forward style network (Johnson et al.) for a painting"
    )
    train.add_argument("style", type=Path, help="the painting")
    train.add_argument("--name", help="network name (default: the painting's file name)")
    train.add_argument("--output-dir", type=Path, help="default: FACESTREAM_STYLE__NETWORKS_DIR")
    train.add_argument("--steps", type=int, default=800)
    train.add_argument("--crop", type=int, default=192, help="training crop side, pixels")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--alpha", type=float, default=2e5, help="content weight")
    train.add_argument("--beta", type=float, default=40.0, help="style weight")
    train.add_argument("--tv-weight", type=float, default=50.0)
    train.add_argument(
        "--edge-weight",
        type=float,
        default=0.0,
        help="weight of the edge-consistency term (no band along the frame's edge)",
    )
    train.add_argument("--edge-ring", type=int, default=16, help="its ring's width, pixels")
    train.add_argument(
        "--edge-margin", type=int, default=24, help="picture around the crop for it, pixels"
    )
    train.add_argument(
        "--face-weight",
        type=float,
        default=0.0,
        help="extra content weight on the LFW crops' faces (no painting's motif over a face)",
    )
    train.add_argument(
        "--style-layers",
        nargs="+",
        metavar="LAYER=WEIGHT",
        help="style layer weights in training, in place of the report's (0.2 each)",
    )
    train.add_argument(
        "--residual-blocks",
        type=int,
        help="residual blocks (default: --resume-from's, else 4); more than it has start as "
        "the identity",
    )
    train.add_argument("--lfw-images", type=int, default=3000)
    train.add_argument(
        "--landscape-share",
        type=float,
        default=0.0,
        help="share of crops from the landscape training photos (python -m "
        "training.style.landscapes fetches them)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--style-side",
        type=int,
        default=256,
        help="the painting's longest side for its Grams, pixels (0: squeezed to the crop)",
    )
    train.add_argument(
        "--content-layer",
        default="block4_conv2",
        help="VGG16 layer of J_content (a network from random weights: block2_conv2 first)",
    )
    train.add_argument(
        "--resume-from",
        type=Path,
        help="a saved network (NAME.npz with its NAME.json) to continue from: a checkpoint, or "
        "another painting's network as a starting point",
    )
    train.set_defaults(handler=cmd_style_train)

    accelerated = commands.add_parser(
        "style-accelerated",
        help="style training on a GPU machine (JAX): bundle here, train there, finish here",
        add_help=False,
    )
    accelerated.add_argument("options", nargs="*", help="see `facestream style-accelerated --help`")

    layers = commands.add_parser(
        "layers",
        help="what the layers learn (Zeiler-Fergus): top-9 patches per unit of VGG16 or the face encoder",
        add_help=False,
    )
    layers.add_argument("options", nargs="*", help="see `facestream layers --help`")


def cmd_stylize(args: argparse.Namespace, settings: Settings) -> None:
    """One image, in either mode: Gatys' optimisation against a STYLE image, or a trained network."""
    import cv2

    from shared.images import decode_image

    if [args.style, args.network, args.painting].count(None) != 2:
        raise CliError(
            "give one of a STYLE image (Gatys), --network NAME (feed-forward) "
            "or --painting FILE (arbitrary-style network)"
        )
    content = cv2.cvtColor(decode_image(read_bytes(args.content)), cv2.COLOR_BGR2RGB)
    if args.painting is not None:
        from services.cli.paintings import paint_file

        image = paint_file(content, read_bytes(args.painting), args.strength, settings)
    elif args.network is not None:
        from shared.style.fast import load_network

        style = settings.style
        image = load_network(args.network, style.networks_dir, style.precision).stylize(content)
    else:
        style = cv2.cvtColor(decode_image(read_bytes(args.style)), cv2.COLOR_BGR2RGB)
        image = _gatys(content, style, args, settings)
    if not cv2.imwrite(str(args.output), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise CliError(f"cannot write {args.output}")
    print(f"wrote {args.output}")


def _gatys(
    content: np.ndarray, style: np.ndarray, args: argparse.Namespace, settings: Settings
) -> np.ndarray:
    """Gatys et al.: optimise the pixels of G so that J(G) = alpha J_content + beta J_style falls."""
    from shared.style.gatys import CostRecord, GatysConfig, stylize

    try:
        config = GatysConfig(
            size=args.size,
            iterations=args.iterations,
            optimizer=args.optimizer,
            alpha=args.alpha,
            beta=args.beta,
            tv_weight=args.tv_weight,
            init=args.init,
            seed=args.seed,
        )
    except ValueError as error:  # the config checks its own numbers
        raise CliError(str(error)) from None
    with progress_bar(config.iterations) as bar:

        def progress(record: CostRecord) -> None:
            text = f"J={record.total:.3e} J_content={record.content:.3e} J_style={record.style:.3e}"
            bar(record.step, text)

        result = stylize(
            content, style, config, progress=progress, models_dir=settings.face.models_dir
        )
    return result.image


def _residual_blocks(args: argparse.Namespace, default: int) -> int:
    """--residual-blocks, else the start network's (a checkpoint resumes as it was), else the
    default layout's."""
    if args.residual_blocks is not None:
        return args.residual_blocks
    if args.resume_from is None:
        return default
    card = json.loads(read_bytes(args.resume_from.with_suffix(".json")))
    return int(card["architecture"]["residual_blocks"])


def _style_layers(pairs: list[str] | None) -> dict[str, float]:
    """The report's style layer weights with the ``LAYER=WEIGHT`` arguments put in their place."""
    from shared.style.gatys import DEFAULT_STYLE_LAYERS

    layers = dict(DEFAULT_STYLE_LAYERS)
    for pair in pairs or []:
        name, _, weight = pair.partition("=")
        try:
            value = float(weight)
            if name not in DEFAULT_STYLE_LAYERS or value < 0:
                raise ValueError(pair)
            layers[name] = value
        except ValueError:
            raise SystemExit(
                f"--style-layers: {pair!r} is not LAYER=WEIGHT with one of "
                f"{', '.join(DEFAULT_STYLE_LAYERS)}"
            ) from None
    return layers


def cmd_style_train(args: argparse.Namespace, settings: Settings) -> None:
    """Train a feed-forward style network on Gatys' J (Johnson et al.); see docs/style.md."""
    from shared.style.fast import Architecture
    from training.style.training import StepRecord, TrainingConfig, train

    config = TrainingConfig(
        style_image=args.style,
        name=args.name or args.style.stem,
        crop=args.crop,
        batch_size=args.batch_size,
        steps=args.steps,
        learning_rate=args.learning_rate,
        alpha=args.alpha,
        beta=args.beta,
        tv_weight=args.tv_weight,
        edge_weight=args.edge_weight,
        edge_ring=args.edge_ring,
        edge_margin=args.edge_margin,
        face_weight=args.face_weight,
        lfw_images=args.lfw_images,
        landscape_share=args.landscape_share,
        seed=args.seed,
        content_layer=args.content_layer,
        style_layers=_style_layers(args.style_layers),
        style_side=args.style_side or None,
        resume_from=args.resume_from,
        architecture=Architecture(
            residual_blocks=_residual_blocks(args, Architecture.residual_blocks)
        ),
    )
    output = args.output_dir or settings.style.networks_dir
    with progress_bar(config.steps) as bar:

        def progress(record: StepRecord) -> None:
            bar(
                record.step,
                f"J={record.total:.3e} J_content={record.content:.3e} J_style={record.style:.3e}"
                f" edge={record.edge:.1f} face={record.face:.3e}",
            )

        train(config, settings.shared_data, output, progress, models_dir=settings.face.models_dir)
    print(f"wrote {output / config.name}.npz and its card {config.name}.json")
