"""Liveness features and the temporal-convolution model: what each number measures, and the shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.liveness.features import FEATURE_NAMES, motion_features, texture_features
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


def test_recapture_texture_cues_move_the_right_way() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    sharpness = FEATURE_NAMES.index("sharpness")
    assert texture_features(sharp)[sharpness] > texture_features(blurred)[sharpness]
    smooth = np.tile(np.linspace(0, 255, 150, dtype=np.float32), (150, 1))
    grid = smooth.copy()
    grid[:, ::3] *= 0.6  # a screen's pixel columns
    chips = [np.repeat(a[..., None], 3, axis=2).astype(np.uint8) for a in (smooth, grid)]
    peak = FEATURE_NAMES.index("spectral_peak")
    assert texture_features(chips[1])[peak] > texture_features(chips[0])[peak] + 1.0


def test_the_layers_output_lengths_follow_n_minus_f_over_s_plus_one() -> None:
    model = build_model(16)
    lengths = [model.get_layer(name).output.shape[1] for name in ("conv1", "conv2", "conv3")]
    assert lengths == [(16 - 3) // 1 + 1, (14 - 3) // 2 + 1, (6 - 3) // 1 + 1] == [14, 6, 4]


def test_saved_weights_round_trip_and_damage_is_refused(tmp_path: Path) -> None:
    features = len(FEATURE_NAMES)
    model = LivenessModel(build_model(16), np.zeros(features), np.ones(features), {"seed": 0})
    windows = np.random.default_rng(1).normal(size=(3, 16, features)).astype(np.float32)
    path = tmp_path / "liveness.npz"
    model.save(path)
    np.testing.assert_allclose(
        load_model(path).probability_live(windows), model.probability_live(windows)
    )
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LivenessModelError, match="sha256"):
        load_model(path)
    with pytest.raises(LivenessModelError, match="python -m shared.liveness.training"):
        load_model(tmp_path / "missing.npz")
