"""Per-frame liveness features of a face track: motion in depth, and the border of a medium.

The sequence model sees, for each frame of a track's window, four numbers made from what the
detector already publishes (the 5 landmarks, the box, a grey crop of the face's surroundings):

- **motion that is not planar** (landmarks against the previous frame): the RMS residual of the
  best affine map of the 5 landmarks, over the inter-ocular distance. A photo or a screen is flat,
  so its landmarks follow an affine map up to perspective; a live head turns in depth (the nose
  moves against the eyes), blinks and talks. Also the change of scale and how far the nose swung
  across the eyes' midline (head yaw changing: a turn in depth). Every number is relative to the
  face's own size, so it means the same on any camera;
- **the border of a medium** (``context.frame_lines``): long straight edges around the face, a
  print's margin or a phone's bezel.

Tried and left out, with the measurements in docs/liveness.md: texture of the chip (sharpness,
high-frequency share, moire peak, luminance range, glare, colour) and whether the surroundings
move with the face. On the held-out live videos they described the camera, the face's size and
the synthetic replays' content more than liveness, and the model that used them rejected real
live faces. The pose is left out too: it says how someone was filmed, not whether they live.

Features are cheap (well under a millisecond per face) so the liveness service keeps up with the
detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.liveness.context import frame_lines

FEATURE_NAMES = ("affine_residual", "scale_change", "nose_swing", "frame_lines")
FEATURES = len(FEATURE_NAMES)
LEFT_EYE, RIGHT_EYE, NOSE = 0, 1, 2


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


def frame_features(
    landmarks: np.ndarray,
    box: Sequence[float],
    context: np.ndarray,
    previous: tuple[np.ndarray, Sequence[float]] | None,
) -> np.ndarray:
    """(FEATURES,) for one frame of a track, given the previous frame's landmarks and box."""
    motion = motion_features(landmarks, box, previous)
    return np.append(motion, np.float32(frame_lines(context)))


def track_features(
    landmarks: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]],
    contexts: Sequence[np.ndarray],
) -> np.ndarray:
    """(T, FEATURES) for consecutive frames of one track."""
    rows, previous = [], None
    for points, box, context in zip(landmarks, boxes, contexts, strict=True):
        rows.append(frame_features(points, box, context, previous))
        previous = (points, box)
    return np.stack(rows) if rows else np.empty((0, FEATURES), np.float32)
