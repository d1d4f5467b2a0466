"""The two images of a snapshot, cut from the frame a track's best face was seen in."""

from __future__ import annotations

import cv2
import numpy as np

from shared.images import encode_jpeg
from shared.schemas import Box

FACE_MARGIN = 1.8
"""The crop is this many box sides wide: enough of the head that the detector finds the face
again when a user enrolls from the snapshot ("this is ...")."""


def face_crop(frame_bgr: np.ndarray, box: Box, side_px: int) -> bytes:
    """A square crop around the face (clamped to the frame), at most ``side_px`` wide, as JPEG."""
    height, width = frame_bgr.shape[:2]
    side = max(box.w, box.h) * FACE_MARGIN
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    x1, y1 = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
    crop = frame_bgr[y0:y1, x0:x1]
    if crop.size == 0:
        crop = frame_bgr
    scale = side_px / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return encode_jpeg(crop, 90)


def thumbnail(frame_bgr: np.ndarray, box: Box, width_px: int) -> bytes:
    """The frame downscaled to ``width_px`` with the face's box drawn, as JPEG."""
    scale = min(1.0, width_px / frame_bgr.shape[1])
    small = cv2.resize(frame_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    top_left = (int(box.x * scale), int(box.y * scale))
    bottom_right = (int((box.x + box.w) * scale), int((box.y + box.h) * scale))
    cv2.rectangle(small, top_left, bottom_right, (0, 200, 255), 2)
    return encode_jpeg(small, 80)
