"""Plain types passed between detection, alignment and encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Box4 = tuple[float, float, float, float]


def box4(values: Any) -> Box4:
    """(x, y, w, h) as four Python floats, from any four numbers."""
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


def box_iou(a: Any, b: Any) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when both are empty."""
    ax, ay, aw, ah = box4(a)
    bx, by, bw, bh = box4(b)
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Order of the 5 landmarks; left/right as they appear in the image (left_eye has the smaller x)."""


@dataclass(frozen=True)
class Detection:
    """One face found in an image."""

    box: tuple[float, float, float, float]
    """x, y, width, height in image pixels."""
    score: float
    """Detector confidence in [0, 1]."""
    landmarks: np.ndarray | None = None
    """(5, 2) float32 pixel coordinates in ``LANDMARK_NAMES`` order, or None if the detector has none."""

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]
