"""Where the trained feed-forward style networks live, readable without loading TensorFlow.

A network is a pair ``NAME.npz`` (weights) + ``NAME.json`` (its card: how it was trained, its
architecture and the weights' sha256). The CLI checks style names against this catalog before a
camera is switched to a style, so a typo is refused at once instead of leaving a camera unstyled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Precision = Literal["auto", "float32", "bfloat16"]
"""Compute type a network paints in (shared/style/fast.py ``resolve_precision``)."""

NETWORKS_DIR = Path(__file__).parent / "networks"
"""The committed, project-trained networks (model cards in docs/style.md)."""


def available_networks(directory: Path = NETWORKS_DIR) -> list[str]:
    """Names of the networks in ``directory`` that have both weights and card."""
    return sorted(p.stem for p in directory.glob("*.json") if p.with_suffix(".npz").exists())
