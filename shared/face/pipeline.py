"""Image -> faces with aligned chips and 128-d encodings: detection, alignment, encoding in one place.

What the CLI and the API go through (``IdentityService``: enrolment, verification,
identification; ``facestream people reencode``), so the gallery's encodings and the photos
checked against them are made the same way. The streaming services do not call it: the detector
detects and cuts the configured encoder's chip kind (``chip_kinds.py``), the recognizer encodes
those chips with the same encoder, so a stream's encodings match the gallery's too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from shared.face.chip_kinds import chip_kind
from shared.face.detection import FaceDetector
from shared.face.encoder import FaceEncoder
from shared.face.jitter import jittered_copies
from shared.face.types import Detection


@dataclass(frozen=True)
class AnalyzedFace:
    detection: Detection
    chip: np.ndarray
    """(S, S, 3) uint8 RGB, aligned the way the encoder was trained (its ``chip_kind``)."""
    embedding: np.ndarray
    """(128,) float32."""


class FacePipeline:
    def __init__(self, detector: FaceDetector, encoder: FaceEncoder, min_face_px: int = 40) -> None:
        self.detector = detector
        self.encoder = encoder
        self.min_face_px = min_face_px
        self.chip_kind = encoder.chip_kind
        """Which aligned chip the encoder takes (shared/face/chip_kinds.py)."""
        self._align = chip_kind(encoder.chip_kind).align

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The chip this pipeline's encoder takes, for the face with these 5 landmarks."""
        return self._align(image, landmarks)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces large enough to recognise and with landmarks to align them, best first."""
        return [
            d
            for d in self.detector.detect(image)
            if d.landmarks is not None and min(d.box[2], d.box[3]) >= self.min_face_px
        ]

    def analyze(self, image: np.ndarray) -> list[AnalyzedFace]:
        """Every face found, aligned and encoded."""
        detections = self.detect(image)
        if not detections:
            return []
        chips = np.stack([self.align(image, cast(np.ndarray, d.landmarks)) for d in detections])
        embeddings = self.encoder.encode(chips)
        return [
            AnalyzedFace(d, chip, embedding)
            for d, chip, embedding in zip(detections, chips, embeddings, strict=True)
        ]

    def analyze_main(self, image: np.ndarray, jitters: int = 0) -> AnalyzedFace | None:
        """The largest face only (the photo's subject), so that jittering is paid for one face."""
        detections = self.detect(image)
        if not detections:
            return None
        main = max(detections, key=lambda d: d.area)
        chip = self.align(image, cast(np.ndarray, main.landmarks))  # detect() keeps faces with them
        return AnalyzedFace(main, chip, self.encode(chip[None], jitters)[0])

    def encode(self, chips: np.ndarray, jitters: int = 0) -> np.ndarray:
        """(N, 128) encodings of aligned chips: each chip's own, or with ``jitters`` > 0 the mean
        of the encodings of that many perturbed copies (shared/face/jitter.py)."""
        if jitters <= 0:
            return self.encoder.encode(chips)
        return np.stack(
            [self.encoder.encode(jittered_copies(chip, jitters)).mean(axis=0) for chip in chips]
        )
