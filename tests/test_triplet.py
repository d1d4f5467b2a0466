"""The triplet loss and the four selectors against hand-computed values on hand-made batches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.similarity.batches import PKSampler
from training.similarity.scratch_encoder import build_scratch_encoder
from training.similarity.triplet import (
    make_selector,
    pairwise_squared_distances,
    triplet_cost,
    triplet_losses,
)

# Five 1-D embeddings: identity 0 at 0.0, 0.3, -0.4; identity 1 at 0.5, 2.0. Squared distances:
# d01 .09 d02 .16 d03 .25 d04 4.0 | d12 .49 d13 .04 d14 2.89 | d23 .81 d24 5.76 | d34 2.25
FIVE = np.array([[0.0], [0.3], [-0.4], [0.5], [2.0]], np.float32)
FIVE_LABELS = np.array([0, 0, 0, 1, 1])


def triplets(selector: str, embeddings: np.ndarray, labels: np.ndarray, alpha: float = 0.2):
    chosen = make_selector(selector, seed=3)(tf.constant(embeddings), tf.constant(labels), alpha)
    return sorted(tuple(int(v) for v in row) for row in chosen.numpy())


def test_loss_matches_hand_computed_values() -> None:
    anchor = tf.constant([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    positive = tf.constant([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    negative = tf.constant([[0.0, 2.0], [1.0, 0.0], [0.0, 1.0488088]])  # d_an = 4, 1, 1.1
    losses = triplet_losses(anchor, positive, negative, alpha=0.2).numpy()
    # max(1 - 4 + .2, 0) = 0; max(2 - 1 + .2, 0) = 1.2; max(1 - 1.1 + .2, 0) = 0.1
    np.testing.assert_allclose(losses, [0.0, 1.2, 0.1], atol=1e-6)
    embeddings = tf.concat([anchor[:1], positive, negative], axis=0)  # rows 0 | 1..3 | 4..6
    cost = triplet_cost(embeddings, tf.constant([[0, 1, 4], [0, 2, 5], [0, 3, 6]]), alpha=0.2)
    assert float(cost) == pytest.approx(1.3, abs=1e-6)  # J is the sum


def test_pairwise_distances_by_hand() -> None:
    d = pairwise_squared_distances(tf.constant(FIVE)).numpy()
    assert d[0, 3] == pytest.approx(0.25) and d[1, 3] == pytest.approx(0.04, abs=1e-6)
    assert d[2, 4] == pytest.approx(5.76, abs=1e-5) and np.all(np.diag(d) == 0)


def test_batch_all_is_every_valid_triplet() -> None:
    expected = [(a, p, n) for a in range(3) for p in range(3) if a != p for n in (3, 4)]
    expected += [(3, 4, n) for n in range(3)] + [(4, 3, n) for n in range(3)]
    assert triplets("batch-all", FIVE, FIVE_LABELS) == sorted(expected)


def test_batch_hard_is_farthest_positive_and_closest_negative_per_anchor() -> None:
    assert triplets("batch-hard", FIVE, FIVE_LABELS) == [
        (0, 2, 3),
        (1, 2, 3),
        (2, 1, 3),
        (3, 4, 1),
        (4, 3, 1),
    ]


def test_semi_hard_picks_the_closest_negative_inside_the_margin() -> None:
    # identity 0 at 0.0, 0.3; identity 1 at 0.35, 0.45; alpha 0.2.
    # (0,1): d .09, negatives .1225 and .2025 both in (.09, .29): the closer, 2.
    # (1,0): d .09, negatives .0025, .0225: harder than the positive: none.
    # (2,3): d .01, negatives .1225 (0) in (.01, .21); .0025 (1) is not farther: 0.
    # (3,2): d .01, negatives .2025 (0) and .0225 (1) both inside: the closer, 1.
    embeddings = np.array([[0.0], [0.3], [0.35], [0.45]], np.float32)
    assert triplets("semi-hard", embeddings, np.array([0, 0, 1, 1])) == [
        (0, 1, 2),
        (2, 3, 0),
        (3, 2, 1),
    ]


def test_semi_hard_on_the_five_point_batch() -> None:
    # Only (0,1) and (0,2) have a negative (3, at .25) inside (d_ap, d_ap + .2).
    assert triplets("semi-hard", FIVE, FIVE_LABELS) == [(0, 1, 3), (0, 2, 3)]


def test_random_gives_each_pair_one_valid_negative_reproducibly() -> None:
    chosen = triplets("random", FIVE, FIVE_LABELS)
    pairs = sorted(
        (a, p) for a in range(5) for p in range(5) if a != p and FIVE_LABELS[a] == FIVE_LABELS[p]
    )
    assert [(a, p) for a, p, _ in chosen] == pairs
    assert all(FIVE_LABELS[n] != FIVE_LABELS[a] for a, _, n in chosen)
    assert chosen == triplets("random", FIVE, FIVE_LABELS)  # same seed, same draws


def test_unknown_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="semi-hard"):
        make_selector("hardest")


@pytest.mark.parametrize("selector", ["semi-hard", "batch-hard", "batch-all", "random"])
def test_gradients_reach_every_encoder_variable(selector: str) -> None:
    encoder = build_scratch_encoder(seed=1)
    images = tf.random.stateless_uniform((8, 64, 64, 3), seed=(1, 2))
    labels = tf.constant([0, 0, 1, 1, 2, 2, 3, 3])
    with tf.GradientTape() as tape:
        embeddings = encoder(images, training=True)
        chosen = make_selector(selector, seed=0)(embeddings, labels, 2.0)  # wide margin: active
        cost = triplet_cost(embeddings, chosen, 2.0)
    gradients = tape.gradient(cost, encoder.trainable_variables)
    assert float(cost) > 0
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)


def test_untrained_scratch_embeddings_start_spread_over_the_sphere() -> None:
    """Centred outputs: random unit vectors in 128-d are ~2 apart (squared). Without the batch norm
    before the unit normalisation, the pooled post-ReLU features of any two images point nearly
    the same way and the semi-hard loss is cheapest to lower by spreading them (similarity.md)."""
    encoder = build_scratch_encoder(seed=1)
    images = tf.random.stateless_uniform((32, 64, 64, 3), seed=(3, 4))
    distances = pairwise_squared_distances(encoder(images, training=True)).numpy()
    off_diagonal = distances[~np.eye(32, dtype=bool)]
    assert 1.5 < off_diagonal.mean() < 2.5 and off_diagonal.min() > 0.5


def test_pk_sampler_builds_p_identities_with_k_images_each() -> None:
    labels = np.repeat(np.arange(6), [5, 5, 3, 2, 4, 1])  # identity 5 has one image: unusable
    sampler = PKSampler(labels, p=3, k=4, seed=7)
    batch = sampler.batch()
    counts = np.unique(labels[batch], return_counts=True)
    assert len(counts[0]) == 3 and 5 not in counts[0]
    assert all(c == min(4, np.sum(labels == v)) for v, c in zip(*counts, strict=True))
    assert len(set(batch.tolist())) == len(batch)  # no image twice
    again = PKSampler(labels, p=3, k=4, seed=7).batch()
    np.testing.assert_array_equal(batch, again)
