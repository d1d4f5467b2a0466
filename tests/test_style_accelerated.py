"""The accelerator's style training (JAX) computes what the TensorFlow network and J compute.

``training.style.accelerated`` writes the network, VGG16 and Gatys' J again for a GPU machine
without TensorFlow; a difference would train a network on another cost than the report measures,
or hand back weights that paint differently here. These tests run the JAX code on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from shared.style.catalog import NETWORKS_DIR
from shared.style.fast import load_network, read_network
from shared.style.gatys import DEFAULT_STYLE_LAYERS
from shared.style.vgg import load_weights
from training.style import accelerated
from training.style.crops import ring_weights
from training.style.deepening import residual_blocks_in, with_identity_blocks
from training.style.landscapes import photo_paths
from training.style.training import (
    LFW_FACE_BOX,
    PerceptualLoss,
    TrainingConfig,
    edge_difference,
    painting_at,
    read_rgb,
)


@pytest.fixture
def faces(shared_data: Path) -> np.ndarray:
    """Two real photos as a (2, 64, 64, 3) float batch."""
    paths = sorted((shared_data / "faces" / "lfw-deepfunneled").glob("*/*.jpg"))[:2]
    return np.stack([cv2.resize(read_rgb(p), (64, 64)) for p in paths]).astype(np.float32)


def _jax_params(name: str) -> dict:
    _, weights = read_network(name, NETWORKS_DIR)
    return {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in weights.items()}


def test_the_jax_network_paints_what_the_shipped_network_paints(faces: np.ndarray) -> None:
    network = load_network("starry_night", precision="float32")
    expected = network.model(tf.constant(faces), training=True).numpy()
    painted = np.asarray(accelerated.stylize(_jax_params("starry_night"), jnp.asarray(faces)))
    assert np.abs(painted - expected).max() < 0.05  # grey levels, of 0..255
    assert np.abs(painted - faces).mean() > 10  # and it does paint


def test_a_network_grown_a_block_deeper_paints_as_before_in_jax_too(faces: np.ndarray) -> None:
    params = _jax_params("great_wave")
    grown = {k: jnp.asarray(v) for k, v in with_identity_blocks(params, 5).items()}
    assert residual_blocks_in(params) == 4 and residual_blocks_in(grown) == 5
    before = accelerated.stylize(params, jnp.asarray(faces))
    assert np.abs(np.asarray(accelerated.stylize(grown, jnp.asarray(faces)) - before)).max() == 0


def test_the_jax_cost_is_gatys_j_as_training_computes_it(
    faces: np.ndarray, shared_data: Path
) -> None:
    painting = shared_data / "style" / "paintings" / "great_wave.jpg"
    config = TrainingConfig(style_image=painting, name="parity", crop=64, face_weight=2.0)
    generated = load_network("great_wave", precision="float32").stylize_batch(
        faces.astype(np.uint8)
    )
    face = np.zeros((2, 64, 64, 1), np.float32)  # a face in one image, none in the other
    face[0, 12:40, 20:44] = 1.0
    expected = PerceptualLoss(config)(
        tf.constant(faces), tf.constant(generated, tf.float32), tf.constant(face)
    )

    assert accelerated.STYLE_LAYERS == DEFAULT_STYLE_LAYERS == config.style_layers
    vgg = {k: jnp.asarray(v) for k, v in load_weights().items()}
    grams = accelerated.style_grams(
        vgg, painting_at(painting, config.style_side), 64, accelerated.STYLE_LAYERS
    )
    found = accelerated.perceptual_loss(
        vgg,
        jnp.asarray(faces),
        jnp.asarray(generated, jnp.float32),
        grams,
        config.alpha,
        config.beta,
        config.tv_weight,
        config.content_layer,
        accelerated.STYLE_LAYERS,
        jnp.asarray(face),
        config.face_weight,
    )
    for name, ours, theirs in zip(
        ("J", "J_content", "J_style", "TV", "J_face"), found, expected, strict=True
    ):
        assert float(ours) == pytest.approx(float(theirs), rel=1e-4), name


def test_a_run_hands_back_networks_that_load_here_with_their_card(
    shared_data: Path, tmp_path: Path
) -> None:
    paintings = [shared_data / "style" / "paintings" / "the_scream.jpg"]
    bundle = tmp_path / "bundle.npz"
    landscape = read_rgb(photo_paths("train")[0])  # a 16:9 wallpaper: three squares
    counts = accelerated.prepare_bundle(
        shared_data, load_weights(), paintings, bundle, lfw_images=6, landscapes=[landscape]
    )
    assert counts["content_squares"] > 6  # the faces and three squares per street frame
    assert counts["landscape_squares"] == 3
    _, _, pool, landscapes = accelerated.read_bundle(bundle)
    assert pool.shape[1:] == (accelerated.POOL_SIDE,) * 2 + (4,) and landscapes == 3
    # The LFW squares carry the face box (the first six squares), scaled with the photo; the
    # street's and the landscape's squares carry none.
    x, y, w, h = LFW_FACE_BOX
    scale = accelerated.POOL_SIDE / 250
    mask = pool[0, :, :, 3] > 127
    rows, cols = np.nonzero(mask)
    assert abs(cols.mean() - (x + w / 2) * scale) < 1 and abs(rows.mean() - (y + h / 2) * scale) < 1
    assert mask.sum() == pytest.approx(w * h * scale**2, rel=0.03)
    assert pool[6:, :, :, 3].max() == 0
    jobs = [  # both grown a fifth block: a run is one batch, so its jobs share the layout
        accelerated.Job("scream_a", "the_scream", "the_scream", residual_blocks=5),
        accelerated.Job(
            "scream_b",
            "the_scream",
            "the_scream",
            beta=80.0,
            learning_rate=5e-4,
            residual_blocks=5,
            landscape_share=0.4,
            face_weight=1.0,
            edge_weight=1e6,
        ),
    ]
    config = accelerated.RunConfig(crop=32, batch_size=1, seconds=0.5, checkpoints=2, log_every=2)
    with pytest.raises(ValueError, match="one residual_blocks"):
        accelerated.train_jobs(
            [jobs[0], accelerated.Job("four", "the_scream", "the_scream")],
            bundle,
            NETWORKS_DIR,
            tmp_path,
            config,
        )
    records = accelerated.train_jobs(
        jobs, bundle, NETWORKS_DIR, tmp_path, config, log=lambda _: None
    )
    assert [r["checkpoint"] for r in records] == [1, 2] and records[1]["steps"] > records[0][
        "steps"
    ]

    path = accelerated.finish(tmp_path, 2, "scream_b", NETWORKS_DIR, tmp_path / "out", "the_scream")
    card = json.loads(path.with_suffix(".json").read_text())
    shipped = json.loads((NETWORKS_DIR / "the_scream.json").read_text())
    assert card["beta"] == 80.0 and card["steps"] == records[1]["steps"]
    assert card["architecture"]["residual_blocks"] == 5
    assert "40% of crops from 3 squares of the landscape training photos" in card["content_data"]
    assert card["face_weight"] == 1.0 and card["face_box"] == list(LFW_FACE_BOX)
    assert (card["edge_weight"], card["edge_ring"], card["edge_margin"]) == (1e6, 16, 24)
    assert card["total_steps"] == shipped["total_steps"] + records[1]["steps"]
    trained = load_network("the_scream", tmp_path / "out", precision="float32")
    frame = np.full((32, 32, 3), 128, np.uint8)
    assert not np.array_equal(trained.stylize(frame), load_network("the_scream").stylize(frame))

    # Finishing against the run's own result as the start (as after copying it into place)
    # would chain the card to its successor: refused.
    with pytest.raises(ValueError, match="not the network scream_b started from"):
        accelerated.finish(tmp_path, 2, "scream_b", tmp_path / "out", tmp_path / "again", "x")


def test_the_learning_rate_holds_then_falls_to_its_floor() -> None:
    config = accelerated.RunConfig(decay_from=0.5, decay_to=0.1)
    rates = [accelerated.learning_rate_scale(p, config) for p in (0.0, 0.5, 0.75, 1.0, 1.2)]
    assert rates == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])


def test_crops_are_cut_from_the_pool_at_random_scales_and_mirrored() -> None:
    """A pool of one left-to-right ramp: every crop is a ramp again (left dark, right bright, or
    mirrored), at slopes between the pool's own and 1.5 times it (shrunk to 192..288 px)."""
    ramp = np.tile(np.linspace(0, 255, accelerated.POOL_SIDE), (accelerated.POOL_SIDE, 1))
    pool = jnp.asarray(np.repeat(ramp[None, :, :, None], 3, axis=3).astype(np.uint8))
    crops = np.asarray(accelerated.random_crops(jax.random.PRNGKey(0), pool, 64, 192))
    assert crops.shape == (64, 192, 192, 3)
    rows = crops[:, 96, :, 0]
    slopes = (rows[:, 150] - rows[:, 40]) / 110  # grey levels per pixel, away from the edges
    own = 255 / (accelerated.POOL_SIDE - 1)
    assert np.all(np.abs(slopes) >= own * 0.98) and np.all(np.abs(slopes) <= own * 1.5 * 1.02)
    assert 10 < np.sum(slopes < 0) < 54  # about half mirrored


def test_each_job_draws_its_share_of_landscape_squares() -> None:
    """A job's ``landscape_share`` of crops comes from the bundle's last squares (the landscapes),
    none at share 0, and asking for some from a bundle without any is an error, not a silent
    run on faces alone."""
    job = accelerated.Job("a", "the_scream", "the_scream", landscape_share=0.3)
    weights = accelerated.square_weights(job, 10, 2)
    assert weights[-2:] == pytest.approx([0.15, 0.15]) and weights[:8] == pytest.approx(
        [0.0875] * 8
    )
    assert accelerated.square_weights(accelerated.Job("b", "x", "x"), 10, 2)[-2:].sum() == 0
    with pytest.raises(ValueError, match="has none"):
        accelerated.square_weights(job, 10, 0)

    side = accelerated.POOL_SIDE
    pool = jnp.asarray(np.stack([np.zeros((side, side, 3)), np.full((side, side, 3), 255)]))
    crops = accelerated.random_crops(
        jax.random.PRNGKey(1), pool.astype(jnp.uint8), 400, 32, jnp.asarray([0.7, 0.3])
    )
    white = float(np.mean(np.asarray(crops)[:, 16, 16, 0] > 128))
    assert 0.24 < white < 0.36  # 0.3 within about three standard deviations of 400 draws


def test_the_edge_term_is_the_cpu_recipes() -> None:
    """The ring (one definition, ``crops.ring_weights``) is the crop's outer ``width`` px, evenly
    weighted; the edge cost equals TensorFlow's on the same painted pairs; the crops the term
    needs are cut that much wider."""
    rng = np.random.default_rng(0)
    painted, wider = rng.uniform(0, 255, (2, 3, 48, 48, 3)).astype(np.float32)
    ring = ring_weights(48, 8)
    assert ring.sum() == pytest.approx(1.0) and not ring[8:-8, 8:-8].any()
    assert np.unique(ring[ring > 0]).size == 1 and ring[7, 20] > 0 and ring[20, 7] > 0
    ours = accelerated.edge_cost(jnp.asarray(painted), jnp.asarray(wider), jnp.asarray(ring))
    theirs = edge_difference(tf.constant(painted), tf.constant(wider), tf.constant(ring))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)

    pool = jnp.zeros((1, accelerated.POOL_SIDE, accelerated.POOL_SIDE, 4), jnp.uint8)
    crops = accelerated.random_crops(jax.random.PRNGKey(0), pool, 2, 192, margin=24)
    assert crops.shape == (2, 240, 240, 4)
