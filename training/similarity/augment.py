"""Image augmentation for the from-scratch encoder: what varies between photos of one person.

Mirror images (faces are near-symmetric; identity does not change), small shifts (alignment
jitter of a few pixels) and brightness/contrast changes (lighting). Seeded by the caller's
generator so runs repeat. Geometry stays mild: the chips are aligned, and large rotations or
crops would teach invariances the aligned test chips never need.
"""

from __future__ import annotations

import tensorflow as tf


def augment(images: tf.Tensor, generator: tf.random.Generator, shift: int = 4) -> tf.Tensor:
    """(B, H, W, 3) float32 in [0, 1] -> the same shape, randomly flipped, shifted and relit."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    flip = generator.uniform([batch, 1, 1, 1]) < 0.5
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], mode="REFLECT")
    offsets = generator.uniform([batch, 2], 0, 2 * shift + 1, dtype=tf.int32)
    images = tf.map_fn(
        lambda item: tf.slice(item[0], [item[1][0], item[1][1], 0], [height, width, 3]),
        (padded, offsets),
        fn_output_signature=tf.float32,
    )
    brightness = generator.uniform([batch, 1, 1, 1], -0.1, 0.1)
    contrast = generator.uniform([batch, 1, 1, 1], 0.8, 1.2)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 1.0)
