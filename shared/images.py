"""Image decoding and encoding with errors that say what is wrong with the input."""

from __future__ import annotations

import cv2
import numpy as np

from shared.errors import ProcessingError

MAX_PIXELS = 100_000_000
"""Larger images are refused: decoding them takes seconds and gigabytes (decompression bombs)."""


def decode_image(data: bytes) -> np.ndarray:
    """BGR uint8 image from encoded bytes (JPEG, PNG, ...), or ``ProcessingError('corrupt_image')``."""
    if not data:
        raise ProcessingError("corrupt_image", "empty image")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ProcessingError("corrupt_image", f"{len(data)} bytes that do not decode as an image")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ProcessingError("image_too_large", f"{image.shape[1]}x{image.shape[0]} pixels")
    return image


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ProcessingError("encode_failed", "JPEG encoding failed")
    return data.tobytes()
