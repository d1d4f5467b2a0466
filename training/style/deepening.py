"""Growing a trained style network deeper without losing what it learnt (Chen et al. 2016,
Net2Net): each added residual block starts as the identity.

A block is ``x + norm_b(conv_b(relu(norm_a(conv_a(x)))))``; with ``norm_b``'s scale and offset
at zero it adds nothing, so the deeper network paints exactly as the one it was grown from and
training adds capacity from there instead of from random weights. Its convolutions start
Glorot-uniform (Keras' default) so that the gradient reaching ``norm_b`` is not zero. Numpy
only: the GPU path (``training.style.accelerated``) runs where TensorFlow is not installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

BLOCK_KERNEL = re.compile(r"res(\d+)a_conv/kernel")


def residual_blocks_in(weights: Mapping[str, object]) -> int:
    """How many residual blocks a network's weights (by ``weights_of``'s paths) hold."""
    return sum(1 for path in weights if BLOCK_KERNEL.fullmatch(path))


def with_identity_blocks(
    weights: Mapping[str, np.ndarray], residual_blocks: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """``weights`` with blocks appended up to ``residual_blocks``, each the identity (above);
    the weights unchanged where they already have that many, ``ValueError`` where more."""
    have = residual_blocks_in(weights)
    if residual_blocks < have:
        raise ValueError(
            f"the network has {have} residual blocks; cannot shrink it to {residual_blocks}"
        )
    rng = np.random.default_rng(seed)
    grown = dict(weights)
    channels = np.shape(weights["res0a_norm/scale"])
    for block in range(have, residual_blocks):
        for half, scale in (("a", 1.0), ("b", 0.0)):
            shape = np.shape(weights[f"res0{half}_conv/kernel"])
            *window, inputs, outputs = shape
            limit = np.sqrt(6.0 / (np.prod(window) * (inputs + outputs)))
            grown[f"res{block}{half}_conv/kernel"] = rng.uniform(-limit, limit, shape).astype(
                np.float32
            )
            grown[f"res{block}{half}_norm/scale"] = np.full(channels, scale, np.float32)
            grown[f"res{block}{half}_norm/offset"] = np.zeros(channels, np.float32)
    return grown
