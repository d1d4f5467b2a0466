"""The scene around a face: where the border of a medium held to the camera shows.

A printed photo or a phone has an edge close around the face: a paper margin, a bezel, straight
lines that frame it. That edge lies outside the aligned chip, so the detector sends a small grey
crop of the face's surroundings (``context_crop``: 2.5 face widths, 96x96) with each face, and
``frame_lines`` measures the long straight edges in it that are off the face.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from shared.errors import ProcessingError
from shared.images import decode_image, encode_jpeg

CONTEXT_SIZE = 96
CONTEXT_SPAN = 2.5
"""The crop's side in face-box sides: wide enough for a phone's bezel or a print's margin."""
CONTEXT_JPEG_QUALITY = 85
FACE_FRACTION = 1 / CONTEXT_SPAN


def crop_transform(box: Sequence[float]) -> np.ndarray:
    """2x3 map from frame pixels to crop pixels: the box's centre to the crop's centre, scaled."""
    x, y, w, h = box
    side = CONTEXT_SPAN * max(w, h, 1.0)
    scale = CONTEXT_SIZE / side
    cx, cy = x + w / 2, y + h / 2
    return np.array(
        [[scale, 0, CONTEXT_SIZE / 2 - scale * cx], [0, scale, CONTEXT_SIZE / 2 - scale * cy]],
        np.float64,
    )


def context_crop(image_bgr: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """(96, 96) uint8 grey: the face's surroundings, edges replicated where they leave the frame."""
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return cv2.warpAffine(
        gray,
        crop_transform(box),
        (CONTEXT_SIZE, CONTEXT_SIZE),
        flags=cv2.INTER_AREA
        if max(box[2], box[3]) * CONTEXT_SPAN > CONTEXT_SIZE
        else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def context_to_b64(crop: np.ndarray) -> str:
    return base64.b64encode(encode_jpeg(crop, CONTEXT_JPEG_QUALITY)).decode()


def context_from_b64(context_jpeg_b64: str) -> np.ndarray:
    """The grey crop carried in a faces message; ``ProcessingError`` if it is damaged."""
    try:
        data = base64.b64decode(context_jpeg_b64, validate=True)
    except ValueError:
        raise ProcessingError("corrupt_image", "context crop is not valid base64") from None
    image = decode_image(data, expected=(CONTEXT_SIZE, CONTEXT_SIZE))  # size checked first
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def _surround_mask() -> np.ndarray:
    """Crop pixels outside the face box (with a small margin)."""
    half = CONTEXT_SIZE * FACE_FRACTION * 0.6
    y, x = np.mgrid[0:CONTEXT_SIZE, 0:CONTEXT_SIZE] - (CONTEXT_SIZE - 1) / 2
    return np.maximum(np.abs(x), np.abs(y)) > half


SURROUND = _surround_mask()


def frame_lines(crop: np.ndarray) -> float:
    """Total length of straight edges at least 0.3 crop widths long whose middle is off the face."""
    edges = cv2.Canny(cv2.GaussianBlur(crop, (3, 3), 0), 50, 150)
    lines = cv2.HoughLinesP(
        edges, 1, np.pi / 180, threshold=20, minLineLength=int(0.3 * CONTEXT_SIZE), maxLineGap=3
    )
    if lines is None:
        return 0.0
    total = 0.0
    for x1, y1, x2, y2 in lines[:, 0]:
        mx, my = int((x1 + x2) / 2), int((y1 + y2) / 2)
        if SURROUND[my, mx]:
            total += float(np.hypot(x2 - x1, y2 - y1))
    return total / CONTEXT_SIZE
