"""Per-frame liveness features of a face track: recapture texture and non-planar motion.

The sequence model sees, for each frame of a track's window, what the detector already gives
(the aligned 150x150 chip, the 5 landmarks, the box) turned into a few numbers that differ between
a live face and a medium held to the camera:

- **texture of a recapture** (from the chip): sharpness (log variance of the Laplacian: a second
  capture is softer), the share of spectral energy at high frequencies and its sharpest peak
  (halftone and pixel-grid moire put energy in a few periodic peaks), luminance range (paper and
  screens compress it), saturation, blue-red cast (screens), specular share (glare);
- **motion that is not planar** (from the landmarks against the previous frame): the residual of
  the best affine map of the 5 landmarks, relative to the inter-ocular distance. A photo or a
  screen moves as a plane, so its landmarks follow an affine map up to perspective; a live head
  turns in depth (the nose moves against the eyes), blinks and talks. Also the change of scale and
  how far the nose swung across the eyes' midline since the previous frame (head yaw changing:
  a turn in depth). The pose itself is left out: it says who is filmed how, not whether they live,
  and a model that saw it learnt the training videos' poses.

Features are cheap (about a millisecond per face) so the liveness service keeps up with the
detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FEATURE_NAMES = (
    "sharpness",
    "high_frequency_share",
    "spectral_peak",
    "luminance_range",
    "saturation",
    "blue_red_cast",
    "specular_share",
    "affine_residual",
    "scale_change",
    "nose_swing",
)
FEATURES = len(FEATURE_NAMES)
LEFT_EYE, RIGHT_EYE, NOSE = 0, 1, 2


def texture_features(chip_rgb: np.ndarray) -> np.ndarray:
    """The seven texture features of one aligned RGB chip."""
    gray = cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sharpness = np.log1p(cv2.Laplacian(gray, cv2.CV_32F).var())
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean())))
    height, width = gray.shape
    y, x = np.mgrid[0:height, 0:width]
    radius = np.hypot((y - height / 2) / (height / 2), (x - width / 2) / (width / 2))
    high = spectrum[radius > 0.5]
    high_share = high.sum() / (spectrum.sum() + 1e-6)
    peak = np.log1p(high.max() / (np.median(high) + 1e-6))
    low, top = np.percentile(gray, [1, 99])
    hsv = cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2HSV)
    red, _, blue = (chip_rgb[..., c].astype(np.float32).mean() for c in range(3))
    return np.array(
        [
            sharpness,
            high_share,
            peak,
            (top - low) / 255.0,
            hsv[..., 1].mean() / 255.0,
            (blue - red) / 255.0,
            float((hsv[..., 2] >= 250).mean()),
        ],
        np.float32,
    )


def _inter_ocular(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[RIGHT_EYE] - landmarks[LEFT_EYE])) + 1e-6


def _nose_offset(landmarks: np.ndarray) -> float:
    """The nose's signed distance from the eyes' midline, in inter-ocular distances (head yaw)."""
    iod = _inter_ocular(landmarks)
    eye_mid = (landmarks[LEFT_EYE] + landmarks[RIGHT_EYE]) / 2
    eye_axis = (landmarks[RIGHT_EYE] - landmarks[LEFT_EYE]) / iod
    return float(np.dot(landmarks[NOSE] - eye_mid, eye_axis) / iod)


def motion_features(
    landmarks: np.ndarray, box: Sequence[float], previous: tuple[np.ndarray, Sequence[float]] | None
) -> np.ndarray:
    """Affine residual, scale change and nose swing against the previous frame (0 for the first)."""
    landmarks = np.asarray(landmarks, np.float64)
    iod = _inter_ocular(landmarks)
    if previous is None:
        return np.zeros(3, np.float32)
    before, previous_box = np.asarray(previous[0], np.float64), previous[1]
    swing = abs(_nose_offset(landmarks) - _nose_offset(before))
    source = np.hstack([before, np.ones((len(before), 1))])
    affine, *_ = np.linalg.lstsq(source, landmarks, rcond=None)
    residual = np.sqrt(np.mean(np.sum((source @ affine - landmarks) ** 2, axis=1))) / iod
    scale = np.log((box[2] * box[3] + 1e-6) / (previous_box[2] * previous_box[3] + 1e-6)) / 2
    return np.array([residual, abs(scale), swing], np.float32)


def track_features(
    chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]
) -> np.ndarray:
    """(T, FEATURES) for consecutive frames of one track."""
    rows = []
    previous = None
    for chip, points, box in zip(chips, landmarks, boxes, strict=True):
        rows.append(
            np.concatenate([texture_features(chip), motion_features(points, box, previous)])
        )
        previous = (points, box)
    return np.stack(rows) if rows else np.empty((0, FEATURES), np.float32)
