"""Face chips: geometry of the transform, parity with dlib's own chips, closeness on real faces.

dlib's chip is the reference because the 128-d encoder was trained on it. The synthetic tests run
everywhere (dlib-bin is a dependency); the real-face tests need ``FACESTREAM_SHARED_DATA``.
Thresholds come from ``facestream alignment evaluate`` (146 held-out LFW faces: mean
abs difference 8.8, mean displacement 2.4 chip px; 10.5 and 2.7 on the 12 faces tested here) with
about a third of margin.
"""

from __future__ import annotations

import math

import cv2
import dlib
import numpy as np
import pytest

from shared.face.alignment import (
    CHIP_PADDING,
    CHIP_SIZE,
    align_face,
    alignment_transform,
    apply_transform,
    dlib_chip_transform,
    dlib_chip_transform_from_parts,
    dlib_template,
    load_template,
    similarity_transform,
    warp_chip,
)
from shared.face.detection import DlibHogDetector
from tests.conftest import SHARED_DATA
from training.alignment import (
    ReferencePipeline,
    box_crop_transform,
    chip_displacement,
    collect_pairs,
    lfw_images,
)

MAX_MEAN_ABS_DIFF = 14.0
MAX_MEAN_DISPLACEMENT_PX = 4.5


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = math.radians(angle_deg)
    rotation = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([rotation, np.array(shift)[:, None]])


def texture(size: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture: every pixel differs, so misplaced sampling shows."""
    noise = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --- everywhere -------------------------------------------------------------------------------------


def test_template_is_a_face_in_dlibs_chip() -> None:
    template = load_template()
    left_eye, right_eye, nose, mouth_left, mouth_right = template.points
    assert template.faces >= 300
    assert template.weights.sum() == pytest.approx(5.0, abs=1e-3)
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert abs((left_eye[0] + right_eye[0]) / 2 - CHIP_SIZE / 2) < 3  # centred
    # dlib's points 2-3 are the image-left eye's corners, 0-1 the image-right one's
    dlib_eyes = dlib_template()[[2, 3, 0, 1]].reshape(2, 2, 2).mean(axis=1)
    assert np.linalg.norm(dlib_eyes - template.points[:2], axis=1).max() < 4


def test_similarity_transform_recovers_a_known_similarity() -> None:
    truth = similarity(23.0, 1.7, (12.0, -30.0))
    points = np.random.default_rng(1).uniform(0, 100, (5, 2))
    estimate = similarity_transform(points, apply_transform(truth, points), np.arange(1, 6))
    np.testing.assert_allclose(estimate, truth, atol=1e-9)


def test_chip_is_rgb_uint8_and_landmarks_land_on_the_template() -> None:
    """Dots drawn at the landmarks of a rotated, scaled face end up at the template's points."""
    template = load_template().points
    to_image = similarity(-17.0, 2.6, (310.0, 95.0))
    landmarks = apply_transform(to_image, template)
    image = np.zeros((700, 700, 3), np.uint8)
    image[:, :, 0] = 255  # blue in BGR
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    chip = align_face(image, landmarks)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    assert chip[2, 2].tolist() == [0, 0, 255]  # RGB out: blue is the last channel
    transform = alignment_transform(landmarks)
    np.testing.assert_allclose(apply_transform(transform, landmarks), template, atol=1e-6)
    for x, y in template:
        patch = chip[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3, 1]
        assert patch.max() > 200, (x, y)  # the white dot (green channel), not the blue ground


def test_numpy_mapping_is_dlibs_mapping() -> None:
    parts = apply_transform(similarity(11.0, 1.9, (40.0, 25.0)), dlib_template()).round()
    shape = dlib.full_object_detection(
        dlib.rectangle(0, 0, 400, 400), [dlib.point(int(x), int(y)) for x, y in parts]
    )
    details = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
    rect = details.rect
    reference = dlib_chip_transform(
        (rect.left(), rect.top(), rect.right(), rect.bottom()), details.angle, CHIP_SIZE
    )
    np.testing.assert_allclose(dlib_chip_transform_from_parts(parts), reference, atol=1e-9)


@pytest.mark.parametrize(("scale", "max_diff"), [(1.3, 0.3), (2.1, 1.5), (4.5, 2.5)])
def test_warp_matches_dlib_get_face_chip(scale: float, max_diff: float) -> None:
    """Same mapping, same sampling: near-identical chips, also through the pyramid (scale 4.5)."""
    image = texture(1000)
    parts = apply_transform(similarity(-8.0, scale, (180.0, 160.0)), dlib_template()).round()
    shape = dlib.full_object_detection(
        dlib.rectangle(0, 0, 999, 999), [dlib.point(int(x), int(y)) for x, y in parts]
    )
    reference = dlib.get_face_chip(np.ascontiguousarray(image[:, :, ::-1]), shape, CHIP_SIZE)
    ours = warp_chip(image, dlib_chip_transform_from_parts(parts))
    assert mean_abs_diff(ours, reference) < max_diff


def test_chip_outside_the_image_is_black() -> None:
    image = np.full((100, 100, 3), 255, np.uint8)
    chip = warp_chip(image, similarity(0, 1.0, (100.0, 100.0)))
    assert chip[:90, :90].max() == 0 and chip[110:, 110:].min() == 255


# --- real faces -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> ReferencePipeline:
    if not (SHARED_DATA / "faces" / "lfw-deepfunneled").is_dir():
        pytest.skip(f"no LFW at {SHARED_DATA} (set FACESTREAM_SHARED_DATA)")
    return ReferencePipeline()


@pytest.mark.data
def test_mtcnn_chips_are_close_to_dlibs_on_held_out_faces(reference: ReferencePipeline) -> None:
    """DevTest people, never used for the template: close to dlib's chip, far from a box crop."""
    paths = lfw_images(SHARED_DATA, held_out=True, count=12, seed=1)
    pairs = list(collect_pairs(paths, reference))
    assert len(pairs) >= 10
    ours, displacement, crops = [], [], []
    for pair in pairs:
        target = reference.dlib_chip(pair)
        ours.append(mean_abs_diff(align_face(pair.image_bgr, pair.mtcnn_landmarks), target))
        transform = alignment_transform(pair.mtcnn_landmarks)
        displacement.append(chip_displacement(transform, pair.dlib_transform))
        crop = warp_chip(pair.image_bgr, box_crop_transform(pair.mtcnn_box))
        crops.append(mean_abs_diff(crop, target))
    print(
        f"MAD {np.mean(ours):.2f} (box crop {np.mean(crops):.2f}), {np.mean(displacement):.2f} px"
    )
    assert np.mean(ours) < MAX_MEAN_ABS_DIFF
    assert np.mean(displacement) < MAX_MEAN_DISPLACEMENT_PX
    assert np.mean(ours) < 0.5 * np.mean(crops)


@pytest.mark.data
def test_dlib_hog_landmarks_reproduce_dlibs_chip(reference: ReferencePipeline) -> None:
    """dlib-hog's inferred landmarks go through the same template back to dlib's exact chip."""
    image = cv2.imread(str(SHARED_DATA / "faces" / "people" / "probe" / "two_people.jpg"))
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    for face in DlibHogDetector().detect(image):
        x, y, w, h = (round(v) for v in face.box)
        shape = reference.shapes(rgb, dlib.rectangle(x, y, x + w - 1, y + h - 1))
        target = dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)
        assert mean_abs_diff(align_face(image, face.landmarks), target) < 1.0
