"""Which aligned chip each encoder takes, and how to cut it: one name per alignment.

Why a name: dlib's ResNet was trained on 150x150 chips aligned like ``dlib.get_face_chip``
(shared/face/alignment.py), SFace on 112x112 chips aligned to the ArcFace 5-point template. A
chip cut for one encoder gives meaningless encodings in the other, so the detector says which
kind it cut (``FaceItem.chip_kind`` in faces/1) and the recognizer refuses a chip of another kind
instead of encoding it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from shared.errors import ProcessingError

DLIB_150 = "dlib150"
ARCFACE_112 = "arcface112"

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float64,
)
"""The standard ArcFace (insightface) 112x112 template in our landmark order (image-left eye
first, then the other eye, nose tip, image-left and image-right mouth corner): the points
SFace's training chips were aligned to, as OpenCV's FaceRecognizerSF::alignCrop does."""


def align_arcface(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The (112, 112, 3) uint8 **RGB** chip: least-squares similarity of the 5 points to the
    template, bilinear warp, black outside the image (OpenCV's alignCrop, then BGR -> RGB)."""
    from shared.face.alignment import similarity_transform
    from shared.images import to_bgr

    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    transform = similarity_transform(points, ARCFACE_TEMPLATE)
    chip = cv2.warpAffine(
        to_bgr(image_bgr), transform, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0
    )
    return cv2.cvtColor(chip, cv2.COLOR_BGR2RGB)


def _align_dlib(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    from shared.face.alignment import align_face

    return align_face(image_bgr, landmarks)


@dataclass(frozen=True)
class ChipKind:
    name: str
    size: int
    align: Callable[[np.ndarray, np.ndarray], np.ndarray]


CHIP_KINDS: dict[str, ChipKind] = {
    DLIB_150: ChipKind(DLIB_150, 150, _align_dlib),
    ARCFACE_112: ChipKind(ARCFACE_112, 112, align_arcface),
}


def chip_kind(name: str) -> ChipKind:
    try:
        return CHIP_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown chip kind {name!r}; known: {sorted(CHIP_KINDS)}") from None


def check_chip_kind(found: str, expected: str) -> None:
    """``ProcessingError`` (dead-lettered with this reason) when a chip was cut for another encoder."""
    if found != expected:
        raise ProcessingError(
            "wrong_chip_kind",
            f"face chip is {found!r} but this recognizer's encoder takes {expected!r}: the detector "
            "and the recognizer must run with the same FACESTREAM_FACE__ENCODER",
        )
