"""Jittered copies of a chip (shared/face/jitter.py) and the settings that select them."""

from __future__ import annotations

import numpy as np
import pytest

from shared.face.factory import build_photo_verification
from shared.face.jitter import jittered_copies
from shared.face.model_files import ModelFileError
from shared.face.verification import Calibration
from shared.settings import Settings


def gradient_chip() -> np.ndarray:
    """A smooth, asymmetric chip, so that mirroring, shifting and rotating all change it."""
    y, x = np.mgrid[0:150, 0:150].astype(np.float32)
    blob = 255 * np.exp(-((x - 100) ** 2 + (y - 50) ** 2) / 800)
    return np.dstack([x * 1.7, y * 1.7, blob]).astype(np.uint8)


def test_every_chip_gets_the_same_perturbations() -> None:
    chip = gradient_chip()
    first, again = jittered_copies(chip, 20), jittered_copies(chip, 20)
    assert first.shape == (20, 150, 150, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(jittered_copies(chip, 20, seed=1), first)


def test_copies_are_small_perturbations_half_of_them_mirrored() -> None:
    chip = gradient_chip().astype(np.float32)
    copies = jittered_copies(gradient_chip(), 40).astype(np.float32)
    mirrored = chip[:, ::-1]
    closer_to_mirror = [np.abs(c - mirrored).mean() < np.abs(c - chip).mean() for c in copies]
    assert 10 <= sum(closer_to_mirror) <= 30
    assert all(not np.array_equal(c, chip) and not np.array_equal(c, mirrored) for c in copies)
    centre = copies[:, 60:90, 60:90]  # within 3 degrees, 3% and 2%: the centre barely moves
    reference = np.where(np.array(closer_to_mirror)[:, None, None, None], mirrored, chip)
    assert np.abs(centre - reference[:, 60:90, 60:90]).mean() < 0.1 * np.abs(chip - mirrored).mean()


def test_photo_verification_follows_the_settings() -> None:
    l2 = Calibration.load()
    dlib = {"encoder": "dlib-resnet"}
    shipped = build_photo_verification(Settings(face=dlib), l2)
    assert shipped.jitters == 50 and shipped.verifier.model.endswith("jitter50")
    off = build_photo_verification(Settings(face={**dlib, "verify_jitters": 0}), l2)
    assert off.jitters == 0 and off.verifier is l2
    head = build_photo_verification(Settings(face={**dlib, "verifier": "head-l1"}), l2)
    assert head.jitters == 0 and head.verifier is l2  # heads were fitted on single encodings
    with pytest.raises(ModelFileError, match="--jitters 7"):
        build_photo_verification(Settings(face={**dlib, "verify_jitters": 7}), l2)
    # The jitter calibration is dlib-resnet's: SFace photos get single encodings.
    sface = build_photo_verification(Settings(face={"encoder": "sface"}), l2)
    assert sface.jitters == 0 and sface.verifier is l2
