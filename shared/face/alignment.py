"""Face chips that match dlib's canonical 150x150 chip, from our 5 (MTCNN-convention) landmarks.

The 128-d dlib ResNet encoder was trained on ``dlib.get_face_chip(img, shape, 150, 0.25)``: a
similarity transform fitting dlib's own 5 points (eye corners, nose base) to a fixed template.
MTCNN gives different points (eye centres, nose tip, mouth corners), so we use a template of *our*
points in *that* chip, derived from data: on LFW faces, run dlib's reference pipeline and MTCNN on
the same image, map MTCNN's points into dlib's chip, and average (trimmed mean). A weighted least
squares similarity (Umeyama) from a face's landmarks to that template then reproduces dlib's chip,
up to how much MTCNN's points move relative to dlib's from face to face. The weights are fitted on
the same faces: the eyes count most, the nose some, and the mouth corners (which move with
expression and are not in dlib's fit at all) hardly.

The template (``alignment_template.json`` next to this file) is derived and measured by
``training/alignment.py`` (``facestream alignment derive-template``, ``... evaluate``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike

from shared.images import to_bgr

CHIP_SIZE = 150
"""Side of the chip dlib's ResNet encoder takes."""
CHIP_PADDING = 0.25
"""dlib's padding for that encoder: the chip shows 25% more than the landmark box on each side."""
TEMPLATE_PATH = Path(__file__).with_name("alignment_template.json")

DLIB_TEMPLATE_UNIT = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ]
)
"""dlib's 5-point template (``get_face_chip_details``), before padding: the reference alignment."""


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where our 5 landmarks sit in dlib's 150x150 chip, and how much to trust each."""

    points: np.ndarray
    """(5, 2) float32 chip pixels, ``LANDMARK_NAMES`` order."""
    weights: np.ndarray
    """(5,) least-squares weights, summing to 5."""
    faces: int
    """Faces the template was averaged over."""


@lru_cache(maxsize=1)
def load_template(path: Path = TEMPLATE_PATH) -> AlignmentTemplate:
    """The stored template (derived by ``--derive-template``)."""
    data = json.loads(path.read_text())
    if data["chip_size"] != CHIP_SIZE or data["padding"] != CHIP_PADDING:
        raise ValueError(f"{path} is for a {data['chip_size']} px chip, padding {data['padding']}")
    return AlignmentTemplate(
        points=np.array(data["points"], dtype=np.float32),
        weights=np.array(data["weights"], dtype=np.float64),
        faces=int(data["faces"]),
    )


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) best mapping ``src`` to ``dst``.

    Weighted least squares, closed form (Umeyama 1991); no reflections. Unlike
    ``cv2.estimateAffinePartial2D`` it has no random sampling and takes per-point weights.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    src_c, dst_c = src - mean_src, dst - mean_dst
    covariance = (dst_c * w[:, None]).T @ src_c
    u, sigma, vt = np.linalg.svd(covariance)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    variance = float(w @ (src_c**2).sum(axis=1))
    scale = float(np.trace(np.diag(sigma) @ d)) / variance if variance > 0 else 1.0
    shift = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, shift[:, None]])


def apply_transform(transform: np.ndarray, points: ArrayLike) -> np.ndarray:
    """``points`` (N, 2) mapped by a 2x3 affine transform."""
    array = np.asarray(points, np.float64)
    return array @ transform[:, :2].T + transform[:, 2]


def alignment_transform(
    landmarks: np.ndarray, template: AlignmentTemplate | None = None
) -> np.ndarray:
    """2x3 transform from image pixels to chip pixels for a face's 5 landmarks."""
    template = template or load_template()
    return similarity_transform(landmarks, template.points, template.weights)


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The (150, 150, 3) uint8 **RGB** chip of the face with these 5 landmarks.

    RGB because the chip's only consumer, dlib's encoder, was trained on RGB chips. Pixels outside
    the image are black, as in dlib's chips.
    """
    landmarks = np.asarray(landmarks, np.float64).reshape(5, 2)
    return warp_chip(to_bgr(image_bgr), alignment_transform(landmarks))


def warp_chip(image_bgr: np.ndarray, transform: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """RGB chip ``size`` px square through ``transform`` (image px -> chip px), as dlib samples.

    Like dlib, a chip more than 2x smaller than its source region is taken from a half-resolution
    pyramid level (sparse bilinear samples of a 600 px face would alias into noise), and pixel
    values are truncated, not rounded (dlib's chips are on average 0.5 darker than OpenCV's
    rounding would give). Only the region around the chip is converted and downsampled, so the
    cost does not grow with the frame.
    """
    transform = np.asarray(transform, np.float64)
    scale = math.sqrt(abs(np.linalg.det(transform[:, :2])))
    levels = pyramid_levels(scale, size)
    if levels:
        transform = _dlib_pyramid_shift(transform, levels)
    region, transform = _source_region(image_bgr, transform, size, levels)
    for _ in range(levels):
        if min(region.shape[:2]) < 2:
            break
        region = np.floor(cv2.pyrDown(region))  # pixel u of the level is 2u of the one above
        transform = np.hstack([transform[:, :2] * 2, transform[:, 2:]])
    chip = cv2.warpAffine(
        region,
        transform,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return cv2.cvtColor(np.floor(chip).astype(np.uint8), cv2.COLOR_BGR2RGB)


def pyramid_levels(scale: float, size: int = CHIP_SIZE) -> int:
    """Halvings dlib's ``extract_image_chips`` applies before sampling a chip at ``scale``.

    dlib halves the chip's source rect while the halved rect still has more pixels than the chip.
    """
    side = (size - 1) / scale + 1  # the rect's width as dlib counts it (right - left + 1)
    levels = 0
    while (side - 1) / 2 + 1 > size:
        side = (side - 1) / 2 + 1
        levels += 1
    return levels


def _dlib_pyramid_shift(transform: np.ndarray, levels: int) -> np.ndarray:
    """``transform`` moved the way dlib's pyramid moves its chips.

    dlib's ``pyramid_down<2>`` centres level pixel j on pixel 2j + 2 of the level above, but its
    coordinate mapping assumes 2j + (2.5, 1.5): each level shifts what dlib samples by
    (-0.5, +0.5) px of the level above, (1 - 2**levels) / 2 * (1, -1) original px in all.
    Sampling at the same place keeps our chips on dlib's (mean abs difference 5.5 -> 0.3 on a
    smooth texture 4.5x larger than the chip).
    """
    offset = (2**levels - 1) / 2 * np.array([-1.0, 1.0])
    shifted = transform.copy()
    shifted[:, 2] = transform[:, 2] - transform[:, :2] @ offset
    return shifted


def _source_region(
    image: np.ndarray, transform: np.ndarray, size: int, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 part of ``image`` the chip samples (with a margin), and the transform from it."""
    corners = apply_transform(
        cv2.invertAffineTransform(transform), [(0, 0), (size, 0), (0, size), (size, size)]
    )
    margin = 2 ** (levels + 1) + 2
    height, width = image.shape[:2]
    x0 = min(max(0, math.floor(corners[:, 0].min()) - margin), width - 1)
    y0 = min(max(0, math.floor(corners[:, 1].min()) - margin), height - 1)
    x1 = max(min(width, math.ceil(corners[:, 0].max()) + margin), x0 + 1)
    y1 = max(min(height, math.ceil(corners[:, 1].max()) + margin), y0 + 1)
    shifted = transform.copy()
    shifted[:, 2] = transform[:, :2] @ np.array([x0, y0], np.float64) + transform[:, 2]
    return image[y0:y1, x0:x1].astype(np.float32), shifted


# --- dlib's reference alignment -----------------------------------------------------------------


def dlib_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's 5-point template in chip pixels (``get_face_chip_details``)."""
    return (padding + DLIB_TEMPLATE_UNIT) / (2 * padding + 1) * size


def dlib_chip_transform(
    rect: tuple[float, float, float, float], angle: float, size: int
) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: image px -> chip px for a chip_details (rect l, t, r, b).

    The rect's corners, rotated by ``angle`` about its centre, go to the chip's corner pixel
    centres (0 and size-1), exactly as dlib samples its chips.
    """
    left, top, right, bottom = rect
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array([(left, top), (right, top), (right, bottom)], np.float64)
    source = (corners - centre) @ rotation.T + centre
    target = np.array([(0, 0), (size - 1, 0), (size - 1, size - 1)], np.float64)
    return cv2.getAffineTransform(source.astype(np.float32), target.astype(np.float32)).astype(
        np.float64
    )


def dlib_chip_transform_from_parts(
    parts: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """Image px -> chip px of ``dlib.get_face_chip(img, shape, size, padding)``, in numpy.

    ``parts`` are the (5, 2) points of dlib's 5-point predictor in its order. This mirrors
    ``chip_details(chip_points, img_points, dims)``: a similarity from the template to the points
    gives an angle and a scale, hence a rotated rect, hence dlib's mapping.
    """
    chip_to_image = similarity_transform(dlib_template(size, padding), parts)
    column = chip_to_image[:, 0]
    angle = math.atan2(column[1], column[0])
    scale = math.hypot(column[0], column[1])
    centre = apply_transform(chip_to_image, [(size / 2, size / 2)])[0]
    half = (size * scale - 1) / 2
    rect = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return dlib_chip_transform(rect, angle, size)
