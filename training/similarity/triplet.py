"""The triplet loss and online triplet selection inside a batch, in TensorFlow.

Loss (FaceNet, Schroff et al. 2015), with f the encoder and alpha the margin:

    L(A, P, N) = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + alpha, 0),    J = sum over triplets.

Selectors take a batch of embeddings (B, D) and identity labels (B,) and return the chosen
triplets as (T, 3) int32 rows (anchor, positive, negative) of batch indices. Selection looks at
distances without gradients; the loss is then recomputed on the chosen rows, so gradients flow
only through the loss. In every selector a positive is another image (index != anchor) of the
anchor's identity and a negative is an image of another identity. Definitions:

- ``random``: every anchor-positive pair with one negative drawn uniformly from the anchor's
  negatives (the baseline: most such triplets are already satisfied and teach nothing).
- ``batch-all``: every valid (anchor, positive, negative) combination.
- ``batch-hard`` (Hermans et al. 2017): per anchor, its farthest positive and closest negative.
- ``semi-hard`` (FaceNet): every anchor-positive pair with the closest negative that is still
  farther than the positive and inside the margin, d(A,P) < d(A,N) < d(A,P) + alpha. Pairs with
  no such negative give no triplet (FaceNet avoids the hardest negatives, which collapse training
  early on).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

SELECTORS = ("random", "semi-hard", "batch-hard", "batch-all")


def pairwise_squared_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """(B, B) ||e_i - e_j||^2, exact zeros on the diagonal, never negative."""
    embeddings = tf.convert_to_tensor(embeddings, tf.float32)
    squares = tf.reduce_sum(tf.square(embeddings), axis=1)
    distances = (
        squares[:, None]
        + squares[None, :]
        - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True)
    )
    distances = tf.maximum(distances, 0.0)
    return distances * (1.0 - tf.eye(tf.shape(embeddings)[0]))


def triplet_losses(
    anchor: tf.Tensor, positive: tf.Tensor, negative: tf.Tensor, alpha: float
) -> tf.Tensor:
    """Per-triplet L(A, P, N) for rows of embeddings (T, D) -> (T,)."""
    positive_distance = tf.reduce_sum(tf.square(anchor - positive), axis=1)
    negative_distance = tf.reduce_sum(tf.square(anchor - negative), axis=1)
    return tf.maximum(positive_distance - negative_distance + alpha, 0.0)


def triplet_cost(embeddings: tf.Tensor, triplets: tf.Tensor, alpha: float) -> tf.Tensor:
    """J: the sum of L over the (T, 3) index triplets of a batch (0 when T = 0)."""
    anchor, positive, negative = (tf.gather(embeddings, triplets[:, i]) for i in range(3))
    return tf.reduce_sum(triplet_losses(anchor, positive, negative, alpha))


def _masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(B, B) bool: positive[a, p] (same identity, a != p) and negative[a, n]."""
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.cast(tf.eye(tf.shape(labels)[0]), tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def _anchor_positive_pairs(positive: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.where(positive), tf.int32)


def select_batch_all(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float) -> tf.Tensor:
    positive, negative = _masks(labels)
    valid = tf.logical_and(positive[:, :, None], negative[:, None, :])
    return tf.cast(tf.where(valid), tf.int32)


def select_batch_hard(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float) -> tf.Tensor:
    distances = tf.stop_gradient(pairwise_squared_distances(embeddings))
    positive, negative = _masks(labels)
    usable = tf.logical_and(tf.reduce_any(positive, 1), tf.reduce_any(negative, 1))
    anchors = tf.cast(tf.where(usable)[:, 0], tf.int32)
    farthest = tf.argmax(tf.where(positive, distances, -1.0), axis=1, output_type=tf.int32)
    closest = tf.argmin(tf.where(negative, distances, float("inf")), axis=1, output_type=tf.int32)
    return tf.stack([anchors, tf.gather(farthest, anchors), tf.gather(closest, anchors)], axis=1)


def select_semi_hard(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float) -> tf.Tensor:
    distances = tf.stop_gradient(pairwise_squared_distances(embeddings))
    positive, negative = _masks(labels)
    pairs = _anchor_positive_pairs(positive)
    anchor_rows = tf.gather(distances, pairs[:, 0])  # (T, B): d(a, n) for every n
    d_ap = tf.gather_nd(distances, pairs)[:, None]
    semi_hard = tf.logical_and(
        tf.gather(negative, pairs[:, 0]),
        tf.logical_and(anchor_rows > d_ap, anchor_rows < d_ap + alpha),
    )
    has_one = tf.reduce_any(semi_hard, axis=1)
    closest = tf.argmin(
        tf.where(semi_hard, anchor_rows, float("inf")), axis=1, output_type=tf.int32
    )
    chosen = tf.concat([pairs, closest[:, None]], axis=1)
    return tf.boolean_mask(chosen, has_one)


def random_selector(seed: int) -> Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]:
    """The random baseline with its own seeded generator (reproducible across runs)."""
    generator = tf.random.Generator.from_seed(seed)

    def select_random(embeddings: tf.Tensor, labels: tf.Tensor, alpha: float) -> tf.Tensor:
        positive, negative = _masks(labels)
        pairs = _anchor_positive_pairs(positive)
        usable = tf.gather(tf.reduce_any(negative, 1), pairs[:, 0])
        pairs = tf.boolean_mask(pairs, usable)
        draws = generator.uniform(tf.stack([tf.shape(pairs)[0], tf.shape(labels)[0]]))
        scores = tf.where(tf.gather(negative, pairs[:, 0]), draws, -1.0)
        picked = tf.argmax(scores, axis=1, output_type=tf.int32)
        return tf.concat([pairs, picked[:, None]], axis=1)

    return select_random


def make_selector(name: str, seed: int = 0) -> Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]:
    """The selector called ``name`` (one of SELECTORS)."""
    if name == "random":
        return random_selector(seed)
    selectors = {
        "semi-hard": select_semi_hard,
        "batch-hard": select_batch_hard,
        "batch-all": select_batch_all,
    }
    if name not in selectors:
        raise ValueError(f"unknown triplet selector {name!r}; choose one of {', '.join(SELECTORS)}")
    return selectors[name]
