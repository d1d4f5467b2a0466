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
