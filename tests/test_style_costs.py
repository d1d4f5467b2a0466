"""The Gatys costs against values computed by hand with plain loops on tiny tensors.

The expected numbers are written out or computed with explicit Python loops over i, j, k, never
with the vectorised formulas under test, so a wrong constant or a transposed Gram is caught.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from shared.style import costs

# A (1, 2, 2, 3) activation: n_H = 2, n_W = 2, n_C = 3.
A = np.array(
    [[[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]], [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]]], dtype=np.float32
)
B = np.array(
    [[[[0.0, 1.0, 1.0], [2.0, 0.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]]], dtype=np.float32
)


def loops_gram(a: np.ndarray) -> list[list[float]]:
    _, n_h, n_w, n_c = a.shape
    return [
        [
            sum(float(a[0, i, j, k] * a[0, i, j, kk]) for i in range(n_h) for j in range(n_w))
            for kk in range(n_c)
        ]
        for k in range(n_c)
    ]


def test_gram_matrix_by_hand() -> None:
    # G_00 = 1 + 0 + 4 + 1 = 6; G_01 = 1*2 + 0*1 + 2*0 + 1*1 = 3; G_02 = 0 + 0 + 2 + 1 = 3
    # G_11 = 4 + 1 + 0 + 1 = 6; G_12 = 0 + 3 + 0 + 1 = 4; G_22 = 0 + 9 + 1 + 1 = 11
    expected = [[6.0, 3.0, 3.0], [3.0, 6.0, 4.0], [3.0, 4.0, 11.0]]
    gram = costs.gram_matrix(tf.constant(A)).numpy()
    assert gram.shape == (3, 3)  # (n_C, n_C), not (n_H n_W, n_H n_W)
    np.testing.assert_allclose(gram, expected)
    np.testing.assert_allclose(gram, loops_gram(A))


def test_gram_matrix_non_square_spatial() -> None:
    a = np.arange(1 * 3 * 2 * 4, dtype=np.float32).reshape(1, 3, 2, 4) / 7.0
    np.testing.assert_allclose(costs.gram_matrix(tf.constant(a)).numpy(), loops_gram(a), rtol=1e-5)


def test_content_cost_by_hand() -> None:
    # differences A - B: [1,1,-1],[-2,1,2],[1,-1,1],[1,-1,-1]; squares sum to 3 + 9 + 3 + 3 = 18
    # J = 18 / (4 * 2 * 2 * 3) = 18 / 48 = 0.375
    squares = sum(
        (float(A[0, i, j, k]) - float(B[0, i, j, k])) ** 2
        for i, j, k in itertools.product(range(2), range(2), range(3))
    )
    assert squares == 18.0
    value = costs.content_cost(tf.constant(A), tf.constant(B)).numpy()
    assert value == pytest.approx(0.375)
    assert costs.content_cost(tf.constant(A), tf.constant(A)).numpy() == 0.0


def test_layer_style_cost_by_hand() -> None:
    # Gram of B: G_00 = 0+4+1+0 = 5, G_01 = 0+0+1+0 = 1, G_02 = 0+2+0+0 = 2,
    #            G_11 = 1+0+1+4 = 6, G_12 = 1+0+0+4 = 5, G_22 = 1+1+0+4 = 6
    gram_b = [[5.0, 1.0, 2.0], [1.0, 6.0, 5.0], [2.0, 5.0, 6.0]]
    np.testing.assert_allclose(costs.gram_matrix(tf.constant(B)).numpy(), gram_b)
    # G_A - G_B = [[1,2,1],[2,0,-1],[1,-1,5]]: squares 1+4+1+4+0+1+1+1+25 = 38
    # normaliser (2 n_H n_W n_C)^2 = (2*2*2*3)^2 = 24^2 = 576
    value = costs.layer_style_cost(tf.constant(A), tf.constant(B)).numpy()
    assert value == pytest.approx(38.0 / 576.0)


def test_layer_style_cost_uses_generated_shape_for_the_constant() -> None:
    # A style activation of another spatial size: the constant is (2 * 2*2*3)^2 from G.
    style = np.ones((1, 3, 1, 3), dtype=np.float32)  # Gram: all 3s
    gram_a = loops_gram(A)
    squares = sum((3.0 - gram_a[k][kk]) ** 2 for k in range(3) for kk in range(3))
    value = costs.layer_style_cost(tf.constant(style), tf.constant(A)).numpy()
    assert value == pytest.approx(squares / 576.0)


def test_style_cost_weights_layers() -> None:
    c = np.full((1, 1, 2, 2), 2.0, dtype=np.float32)  # Gram all 8 (two pixels, 2*2 each)
    d = np.zeros((1, 1, 2, 2), dtype=np.float32)
    # layer two: 4 entries of 8^2 = 256 -> sum 256; constant (2*1*2*2)^2 = 64 -> 4.0
    a_s = {"one": tf.constant(A), "two": tf.constant(c)}
    a_g = {"one": tf.constant(B), "two": tf.constant(d)}
    value = costs.style_cost(a_s, a_g, {"one": 0.5, "two": 0.25}).numpy()
    assert value == pytest.approx(0.5 * 38.0 / 576.0 + 0.25 * 4.0)
    # Layers not in the weights are ignored.
    assert costs.style_cost(a_s, a_g, {"two": 1.0}).numpy() == pytest.approx(4.0)


def test_total_variation_by_hand() -> None:
    image = np.array([[[[0.0], [3.0]], [[1.0], [5.0]]]], dtype=np.float32)  # 2x2, one channel
    # vertical |1-0| + |5-3| = 3; horizontal |3-0| + |5-1| = 7
    assert costs.total_variation(tf.constant(image)).numpy() == pytest.approx(10.0)
    assert costs.total_variation(tf.constant(A)).numpy() == pytest.approx(
        float(tf.image.total_variation(tf.constant(A[0])))
    )


def test_total_cost() -> None:
    assert float(costs.total_cost(2.0, 3.0, alpha=10.0, beta=40.0)) == pytest.approx(140.0)
    assert float(costs.total_cost(2.0, 3.0, 1.0, 1.0, tv=5.0, tv_weight=0.1)) == pytest.approx(5.5)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="n_H, n_W, n_C"):
        costs.gram_matrix(tf.zeros((2, 2, 2, 3)))
    with pytest.raises(ValueError, match="differ"):
        costs.content_cost(tf.constant(A), tf.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="channels"):
        costs.layer_style_cost(tf.zeros((1, 2, 2, 4)), tf.constant(A))


def test_costs_are_differentiable() -> None:
    g = tf.Variable(B)
    with tf.GradientTape() as tape:
        j = costs.total_cost(
            costs.content_cost(tf.constant(A), g), costs.layer_style_cost(tf.constant(A), g)
        )
    grad = tape.gradient(j, g).numpy()
    # d/dG of the content term alone is (G - A) / (2 n_H n_W n_C) * alpha; check one entry by
    # finite differences of the whole J instead, which also covers the style term.
    eps = 1e-2
    bumped = B.copy()
    bumped[0, 0, 1, 2] += eps

    def j_of(x: np.ndarray) -> float:
        t = tf.constant(x)
        return float(
            costs.total_cost(
                costs.content_cost(tf.constant(A), t), costs.layer_style_cost(tf.constant(A), t)
            )
        )

    numeric = (j_of(bumped) - j_of(B)) / eps
    assert grad[0, 0, 1, 2] == pytest.approx(numeric, rel=2e-2)


def test_per_position_compares_a_painting_of_another_size_by_its_statistics() -> None:
    """A painting twice as wide and tall with the same statistics per position (the activations
    tiled 2x2) has four times the Gram sum; scaled per position it is the same target, so its
    style cost against the original is zero, where unscaled it is not."""
    rng = np.random.default_rng(0)
    a = tf.constant(rng.random((1, 4, 4, 8)), tf.float32)
    tiled = tf.tile(a, [1, 2, 2, 1])
    scaled = costs.per_position({"l": tiled}, {"l": a}, ["l"])
    assert float(costs.layer_style_cost(scaled["l"], a)) == pytest.approx(0.0, abs=1e-6)
    assert float(costs.layer_style_cost(tiled, a)) > 1e-3
