"""Face detectors behind one small interface, so the detector service can swap them."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from shared.schemas import Box, DetectedFace


class FaceDetector(ABC):
    name: str

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in a BGR image, boxes in its pixels, best first."""


class HaarCascadeDetector(FaceDetector):
    """OpenCV's pretrained frontal-face Haar cascade (Viola-Jones), shipped inside opencv-python.

    Fast on a CPU and dependency-free; it gives no landmarks and misses profiles, which is why the
    detector stays pluggable.
    """

    name = "opencv-haar-frontalface-default"

    def __init__(self, min_size: int = 24, max_width: int = 960) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade from {path}")
        self.min_size = min_size
        self.max_width = max_width

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        scale = min(1.0, self.max_width / image.shape[1])
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=1.1,
            minNeighbors=5,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        faces = [
            DetectedFace(
                box=Box(x=x / scale, y=y / scale, w=w / scale, h=h / scale),
                score=float(1.0 / (1.0 + np.exp(-float(weight)))),
            )
            for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=True)
        ]
        return sorted(faces, key=lambda f: f.score, reverse=True)
