"""``facestream similarity prepare|train|train-head|evaluate|curves``: the learned similarity
(docs/similarity.md). The training package is imported only when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    similarity = commands.add_parser(
        "similarity", help="train and evaluate the learned similarity (triplets, binary heads)"
    )
    similarity.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    similarity.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="chips/features cache (default: bench/out/similarity)",
    )
    actions = similarity.add_subparsers(dest="action", required=True)
    actions.add_parser("prepare", help="detect, align and encode the LFW images once")
    train = actions.add_parser("train", help="train an encoder with the triplet loss")
    train.add_argument("--mode", choices=("finetune", "scratch"), required=True)
    train.add_argument(
        "--selector",
        choices=("random", "semi-hard", "batch-hard", "batch-all"),
        default="semi-hard",
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--steps-per-epoch", type=int, help="default: one pass over the images")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--alpha", type=float, default=0.2, help="triplet margin")
    train.add_argument("--identities", type=int, default=16, help="P identities per batch")
    train.add_argument("--images", type=int, default=4, help="K images per identity")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, help="default: bench/out/similarity/runs/MODE-SELECTOR")
    head = actions.add_parser("train-head", help="train a binary head on frozen encodings")
    head.add_argument("--kind", choices=("l1", "chi2"), required=True)
    head.add_argument("--output", type=Path, help="default: the committed file of the kind")
    head.add_argument("--seed", type=int, default=0)
    head.add_argument("--l2", type=float, default=1e-5, help="L2 penalty per pair on the weights")
    head.add_argument(
        "--hard-negatives",
        type=int,
        default=2,
        help="also pair every image with its K nearest images of other people (0: random only)",
    )
    evaluate = actions.add_parser("evaluate", help="ROC, AUC, accuracy, TAR@FAR=1e-3 on DevTest")
    evaluate.add_argument(
        "models",
        nargs="+",
        help="pixels | pca | pretrained | finetuned[=FILE.npz] | head-l1[=FILE] | head-chi2[=FILE]"
        " | scratch=FILE.weights.h5",
    )
    evaluate.add_argument(
        "--report", type=Path, default=Path("docs/figures/similarity-devtest.json")
    )
    evaluate.add_argument("--roc", type=Path, default=Path("docs/figures/similarity-roc.png"))
    curves = actions.add_parser("curves", help="plot the training curves of runs in one PNG")
    curves.add_argument("runs", nargs="+", type=Path, help="run folders (with curves.json)")
    curves.add_argument("--output", type=Path, default=Path("docs/figures/similarity-curves.png"))
    similarity.set_defaults(handler=cmd_similarity)


def cmd_similarity(args: argparse.Namespace, settings: Settings) -> None:
    """Learned similarity: triplet training, binary heads, DevTest evaluation (docs/similarity.md)."""
    from shared.face.encoder import configure_threads
    from training.similarity import commands
    from training.similarity.data import DEFAULT_CACHE

    configure_threads(args.threads)
    data, cache = settings.shared_data, args.cache or DEFAULT_CACHE
    if args.action == "prepare":
        commands.prepare(data, cache)
    elif args.action == "train":
        out = args.out or Path("bench/out/similarity/runs") / f"{args.mode}-{args.selector}"
        commands.train(
            data,
            args.mode,
            args.selector,
            out,
            args.epochs,
            args.steps_per_epoch,
            args.learning_rate,
            args.alpha,
            args.seed,
            args.identities,
            args.images,
            cache,
        )
        print(f"wrote {out}/ (curves.csv, curves.json, checkpoints, final weights)")
    elif args.action == "train-head":
        path = commands.train_head(
            data, args.kind, args.output, cache, args.seed, args.l2, args.hard_negatives
        )
        print(f"wrote {path}")
    elif args.action == "curves":
        commands.curves(args.runs, args.output)
        print(f"wrote {args.output}")
    else:
        commands.evaluate(data, args.models, args.report, args.roc, cache)
        print(f"wrote {args.report} and {args.roc}")
