"""Carrying faces between detections: pyramidal Lucas-Kanade optical flow on the landmarks.

Between two full detections (``schedule.py`` decides which frames get one) every face of a camera
is carried to the new frame by measuring how its 5 landmarks and 4 points inside its box moved:
``cv2.calcOpticalFlowPyrLK`` from the previous grey frame, checked forwards-backwards (a point
whose backward flow does not return within ``max_fb_error`` px is not trusted). The box moves by
the trusted points' median shift and scales by their spread; each landmark takes its own flow
when trusted, else the box's motion. A face with fewer than ``min_points`` trusted points is
lost: the schedule then asks for a detection on the next frame.

Why optical flow and not a Kalman filter or a library tracker: a Kalman filter (or constant-
velocity extrapolation) only predicts from past detections, so a head that turns or stops is
mispredicted until the next detection; flow *measures* each frame (bench.tracking compares the
landmark errors against a detection on the same frame). supervision's ByteTrack associates
detections and needs one on every frame; it predicts no landmarks, which the chips need. LK on
nine points costs ~0.3 ms per face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BoxTuple = tuple[float, float, float, float]

LK_PARAMS = {
    "winSize": (21, 21),
    "maxLevel": 3,
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
}


@dataclass
class Carried:
    """One face carried to a new frame (or not: ``ok`` False)."""

    box: BoxTuple
    landmarks: np.ndarray
    """(5, 2) float32, frame pixels."""
    ok: bool


def _box_points(box: BoxTuple) -> np.ndarray:
    """Four points inside the box (cheek and brow area), where the face's texture is."""
    x, y, w, h = box
    return np.array(
        [[x + w * fx, y + h * fy] for fx, fy in ((0.3, 0.3), (0.7, 0.3), (0.3, 0.75), (0.7, 0.75))],
        np.float32,
    )


def carry(
    previous: np.ndarray,
    current: np.ndarray,
    box: BoxTuple,
    landmarks: np.ndarray,
    max_fb_error: float = 1.5,
    min_points: int = 5,
) -> Carried:
    """Move one face from the grey frame ``previous`` to the grey frame ``current``."""
    points = np.vstack([np.asarray(landmarks, np.float32).reshape(-1, 2), _box_points(box)])
    start = points.reshape(-1, 1, 2)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, start, None, **LK_PARAMS)
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, moved, None, **LK_PARAMS)
    moved, back = moved.reshape(-1, 2), back.reshape(-1, 2)
    error = np.linalg.norm(back - points, axis=1)
    good = (status.ravel() == 1) & (status_back.ravel() == 1) & (error < max_fb_error)
    if good.sum() < min_points:
        return Carried(box, np.asarray(landmarks, np.float32), False)
    shift = np.median(moved[good] - points[good], axis=0)
    before, after = points[good], moved[good]
    spread_before = np.linalg.norm(before - before.mean(axis=0), axis=1).mean()
    spread_after = np.linalg.norm(after - after.mean(axis=0), axis=1).mean()
    scale = float(np.clip(spread_after / max(spread_before, 1e-3), 0.8, 1.25))
    x, y, w, h = box
    cx, cy = x + w / 2 + shift[0], y + h / 2 + shift[1]
    new_box = (float(cx - w * scale / 2), float(cy - h * scale / 2), w * scale, h * scale)
    # Landmarks: their own flow when trusted, else the box's similarity motion.
    old_centre = np.array([x + w / 2, y + h / 2], np.float32)
    rigid = (points[:5] - old_centre) * scale + old_centre + shift
    new_landmarks = np.where(good[:5, None], moved[:5], rigid).astype(np.float32)
    return Carried(_clip(new_box, current.shape), new_landmarks, True)


def _clip(box: BoxTuple, shape: tuple[int, ...]) -> BoxTuple:
    height, width = shape[:2]
    x0, y0 = min(max(box[0], 0.0), width), min(max(box[1], 0.0), height)
    x1, y1 = min(max(box[0] + box[2], 0.0), width), min(max(box[1] + box[3], 0.0), height)
    return (x0, y0, x1 - x0, y1 - y0)


def extrapolate(
    box: BoxTuple, velocity: tuple[float, float], landmarks: np.ndarray
) -> tuple[BoxTuple, np.ndarray]:
    """Constant-velocity prediction (the Kalman filter's motion model), for bench.tracking's
    comparison: the face keeps moving as it moved between its last two detections."""
    dx, dy = velocity
    return (box[0] + dx, box[1] + dy, box[2], box[3]), np.asarray(landmarks) + np.array([dx, dy])
