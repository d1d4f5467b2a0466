"""Liveness features and the temporal-convolution model: what each number measures, and the shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.liveness.features import FEATURE_NAMES, motion_features
from shared.liveness.model import LivenessModel, LivenessModelError, build_model, load_model

# Left eye, right eye, nose, mouth left, mouth right of a frontal face, in pixels.
FACE = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], np.float64)
BOX = (20.0, 20.0, 80.0, 100.0)


def test_a_plane_moving_leaves_no_affine_residual_a_turning_head_does() -> None:
    angle = np.deg2rad(5)
    affine = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * 1.1
    moved_plane = FACE @ affine.T + [3.0, -2.0]
    residual_plane = motion_features(moved_plane, BOX, (FACE, BOX))[0]
    turned = FACE.copy()
    turned[2, 0] += 8.0  # the nose swings against the eyes: rotation in depth
    residual_head = motion_features(turned, BOX, (FACE, BOX))[0]
    assert residual_plane < 1e-6 and residual_head > 0.03
    assert not motion_features(FACE, BOX, None).any()  # no previous frame, no motion
    assert motion_features(turned, BOX, (FACE, BOX))[2] == pytest.approx(8.0 / 40.0)  # swing / IOD
    assert motion_features(moved_plane, BOX, (FACE, BOX))[2] == pytest.approx(0.0, abs=1e-9)


def test_the_layers_output_lengths_follow_n_minus_f_over_s_plus_one() -> None:
    model = build_model(16)
    lengths = [model.get_layer(name).output.shape[1] for name in ("conv1", "conv2", "conv3")]
    assert lengths == [(16 - 3) // 1 + 1, (14 - 3) // 2 + 1, (6 - 3) // 1 + 1] == [14, 6, 4]


def test_saved_weights_round_trip_and_damage_is_refused(tmp_path: Path) -> None:
    features = len(FEATURE_NAMES)
    model = LivenessModel(
        build_model(16), np.zeros(features), np.ones(features), {"seed": 0}, (0.5, -1.0)
    )
    windows = np.random.default_rng(1).normal(size=(3, 16, features)).astype(np.float32)
    path = tmp_path / "liveness.npz"
    model.save(path)
    loaded = load_model(path)
    assert loaded.calibration == (0.5, -1.0)
    np.testing.assert_allclose(loaded.probability_live(windows), model.probability_live(windows))
    np.testing.assert_allclose(
        model.probability_live(windows), 1 / (1 + np.exp(-(0.5 * model.logits(windows) - 1.0)))
    )
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LivenessModelError, match="sha256"):
        load_model(path)
    with pytest.raises(LivenessModelError, match="facestream liveness-model train"):
        load_model(tmp_path / "missing.npz")


def _scene(size: int = 400, seed: int = 0) -> np.ndarray:
    """A textured grey scene (smoothed noise): something whose motion can be seen."""
    noise = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3.0)


def test_straight_edges_framing_the_face_are_measured_off_the_face_only() -> None:
    from shared.liveness.context import CONTEXT_SIZE, frame_lines

    blank = np.full((CONTEXT_SIZE, CONTEXT_SIZE), 128, np.uint8)
    framed = blank.copy()
    cv2.rectangle(framed, (8, 8), (CONTEXT_SIZE - 9, CONTEXT_SIZE - 9), 255, 2)  # a bezel
    face_only = blank.copy()
    cv2.line(face_only, (40, 48), (56, 48), 255, 2)  # a short edge on the face
    assert frame_lines(blank) == 0.0 and frame_lines(face_only) == 0.0
    assert frame_lines(framed) > 2.0  # four sides of about 0.8 crop widths


def test_a_damaged_context_crop_is_a_processing_error() -> None:
    from shared.errors import ProcessingError
    from shared.liveness.context import context_from_b64, context_to_b64

    with pytest.raises(ProcessingError, match="corrupt_image"):
        context_from_b64("not base64!")
    crop = _scene(96)
    assert np.abs(context_from_b64(context_to_b64(crop)).astype(int) - crop).mean() < 3


def test_calibration_puts_even_odds_where_the_held_out_error_rates_balance() -> None:
    from training.liveness.training import Windows, calibrate

    class Scores(LivenessModel):
        """Log-odds given by the window's first feature: an overconfident network, shifted."""

        def logits(self, windows: np.ndarray) -> np.ndarray:
            return np.asarray(windows, np.float64)[:, 0, 0]

    features = len(FEATURE_NAMES)
    model = Scores(build_model(16), np.zeros(features), np.ones(features), {})
    rng = np.random.default_rng(0)
    live, attacks = rng.normal(-20, 4, 200), rng.normal(-40, 4, 600)  # all "attacks" before
    windows = np.zeros((800, 16, features))
    windows[:, 0, 0] = np.concatenate([live, attacks])
    labels = ["live"] * 200 + ["print"] * 600
    assert (model.probability_live(windows) < 0.5).all()
    calibrate(model, Windows(windows, labels))
    judged_live = model.probability_live(windows) >= 0.5
    bpcer, apcer = 1 - judged_live[:200].mean(), judged_live[200:].mean()
    assert bpcer < 0.02 and apcer < 0.02  # the midpoint, -30, whatever the class ratio
    assert model.card["calibration"]["windows"] == {"live": 200, "print": 600}
