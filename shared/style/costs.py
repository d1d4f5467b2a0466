"""The Gatys et al. neural style transfer costs, exactly as the method defines them.

Every activation is a ``(1, n_H, n_W, n_C)`` tensor of one VGG16 layer (batch of one: the costs
compare one generated image G with one content image C and one style image S). The normalising
constants are part of the definition, not tuning: they make the costs of layers of different sizes
comparable, so the layer weights lambda_l mean what they say.

- content:  J_content(C, G) = 1 / (4 n_H n_W n_C) * sum_ijk (a^C_ijk - a^G_ijk)^2
- Gram:     G_kk' = sum_ij a_ijk a_ijk'    (n_C x n_C: which features fire together, not where)
- style, one layer:  J^l_style(S, G) = 1 / (2 n_H n_W n_C)^2 * sum_kk' (G^S_kk' - G^G_kk')^2
- style:    J_style(S, G) = sum_l lambda_l J^l_style(S, G)
- total:    J(G) = alpha J_content + beta J_style (+ tv_weight * TV(G))
- total variation (optional smoothness prior, not part of Gatys' J):
            TV(G) = sum |G[i+1, j] - G[i, j]| + sum |G[i, j+1] - G[i, j]|   (over pixels and channels)

The Gram is a sum over positions, so S and G must be compared at the same number of positions.
The painting is shown at G's longest side with its own proportions and its activations scaled by
sqrt(n_G / n_S) (``per_position``), as Johnson's neural-style normalises Grams by positions,
rather than squeezed to G's shape: squeezing makes the target depend on the content's aspect (a
portrait painting behind a 16:9 frame has its strokes stretched 2.2 times), which no network
trained once per painting can follow, and which is not the painting's style (docs/style.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf


def _dims(activation: tf.Tensor) -> tuple[int, int, int]:
    shape = activation.shape
    if shape.rank != 4 or shape[0] != 1:
        raise ValueError(f"expected an activation of shape (1, n_H, n_W, n_C), got {shape}")
    return int(shape[1]), int(shape[2]), int(shape[3])


def content_cost(a_C: tf.Tensor, a_G: tf.Tensor) -> tf.Tensor:  # noqa: N803 - names from the paper
    """Squared distance of one layer's activations, scaled by 1 / (4 n_H n_W n_C)."""
    n_H, n_W, n_C = _dims(a_G)  # noqa: N806
    if a_C.shape != a_G.shape:
        raise ValueError(f"content and generated activations differ: {a_C.shape} vs {a_G.shape}")
    return tf.reduce_sum(tf.square(a_C - a_G)) / (4.0 * n_H * n_W * n_C)


def gram_matrix(activation: tf.Tensor) -> tf.Tensor:
    """G_kk' = sum_ij a_ijk a_ijk': the (n_C, n_C) matrix of channel co-activations."""
    n_H, n_W, n_C = _dims(activation)  # noqa: N806
    unrolled = tf.reshape(activation, (n_H * n_W, n_C))
    return tf.matmul(unrolled, unrolled, transpose_a=True)


def per_position(
    a_S: Mapping[str, tf.Tensor],  # noqa: N803
    like: Mapping[str, tf.Tensor],
    layers: Sequence[str],
) -> dict[str, tf.Tensor]:
    """The style activations of ``layers`` scaled by sqrt(positions in ``like`` / positions in
    a_S): their Gram sums then count as many positions as G's, so an S of another size and shape
    is compared per position."""
    scaled = {}
    for name in layers:
        s_h, s_w, _ = _dims(a_S[name])
        g_h, g_w, _ = _dims(like[name])
        scaled[name] = a_S[name] * ((g_h * g_w) / (s_h * s_w)) ** 0.5
    return scaled


def layer_style_cost(a_S: tf.Tensor, a_G: tf.Tensor) -> tf.Tensor:  # noqa: N803
    """Squared Frobenius distance of the two Gram matrices, scaled by 1 / (2 n_H n_W n_C)^2.

    S and G may differ in n_H, n_W (a style image of another size); the constant uses G's.
    """
    n_H, n_W, n_C = _dims(a_G)  # noqa: N806
    if _dims(a_S)[2] != n_C:
        raise ValueError(f"style and generated activations differ in channels: {a_S.shape}")
    difference = gram_matrix(a_S) - gram_matrix(a_G)
    return tf.reduce_sum(tf.square(difference)) / float((2 * n_H * n_W * n_C) ** 2)


def style_cost(
    a_S: Mapping[str, tf.Tensor],  # noqa: N803
    a_G: Mapping[str, tf.Tensor],  # noqa: N803
    layer_weights: Mapping[str, float],
) -> tf.Tensor:
    """sum_l lambda_l J^l_style over the layers in ``layer_weights``."""
    total = tf.constant(0.0)
    for name, weight in layer_weights.items():
        total += float(weight) * layer_style_cost(a_S[name], a_G[name])
    return total


def total_variation(image: tf.Tensor) -> tf.Tensor:
    """Anisotropic L1 total variation of a (1, H, W, C) image: sum of absolute neighbour differences.

    Same value as ``tf.image.total_variation``; it penalises high-frequency noise that the style
    cost alone leaves in the generated pixels.
    """
    _dims(image)
    vertical = tf.reduce_sum(tf.abs(image[:, 1:, :, :] - image[:, :-1, :, :]))
    horizontal = tf.reduce_sum(tf.abs(image[:, :, 1:, :] - image[:, :, :-1, :]))
    return vertical + horizontal


def total_cost(
    J_content: tf.Tensor,  # noqa: N803
    J_style: tf.Tensor,  # noqa: N803
    alpha: float = 10.0,
    beta: float = 40.0,
    tv: tf.Tensor | float = 0.0,
    tv_weight: float = 0.0,
) -> tf.Tensor:
    """J(G) = alpha J_content + beta J_style + tv_weight TV(G)."""
    return alpha * J_content + beta * J_style + tv_weight * tv
