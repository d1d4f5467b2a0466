"""Aligned face chips as they travel in ``faces/1`` messages: RGB chips <-> base64 JPEG."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from shared.errors import ProcessingError
from shared.face.alignment import CHIP_SIZE
from shared.images import decode_image, encode_jpeg

CHIP_JPEG_QUALITY = 95
"""High enough that the encodings of a sent chip stay within float noise of the original's."""


def chip_to_b64(chip_rgb: np.ndarray) -> str:
    jpeg = encode_jpeg(cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2BGR), CHIP_JPEG_QUALITY)
    return base64.b64encode(jpeg).decode()


def chip_from_b64(chip_jpeg_b64: str, size: int = CHIP_SIZE) -> np.ndarray:
    """The RGB chip carried in a faces message; ``ProcessingError`` if it is damaged or is not
    ``size`` px square (read from its header, before decoding: a chip is a message's bytes)."""
    try:
        data = base64.b64decode(chip_jpeg_b64, validate=True)
    except ValueError:
        raise ProcessingError("corrupt_image", "face chip is not valid base64") from None
    return cv2.cvtColor(decode_image(data, expected=(size, size)), cv2.COLOR_BGR2RGB)
