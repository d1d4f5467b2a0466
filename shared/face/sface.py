"""SFace (OpenCV Zoo, 2021dec): a 128-d face encoder rebuilt in Keras from its ONNX weights.

Why SFace: on LFW View 1 DevTest it reaches TAR 98% at FAR 1e-3 where dlib's ResNet reaches 85%,
and 1:K identification needs per-pair false-accept rates near 1e-5 (docs/models.md). It is a
MobileFaceNet-like chain: 27 x (conv or depthwise conv, batch norm, PReLU) on a 112x112 RGB chip
aligned to the ArcFace 5-point template (shared/face/chips.py), then a 7x7x1024 -> 128 fully
connected layer with batch norms on both sides. All batch norms are folded into the layers
before or after them at conversion (shared/face/sface_files.py), so the Keras graph is 27 convs,
27 PReLUs and one dense layer.

Input: (N, 112, 112, 3) uint8 RGB chips. Output: (N, 128) float32 **unit** vectors. OpenCV
compares SFace features by cosine; on unit vectors the squared L2 distance the rest of the
project thresholds is 2 - 2 cos, the same ranking and a calibrated threshold of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from shared.face.encoder import FaceEncoder, configure_threads
from shared.face.sface_files import INPUT_MEAN, INPUT_SCALE, ensure_sface_weights
from shared.face.sface_lite import LiteRunner, ensure_lite_model, unit_vectors
from shared.model_cache import default_models_dir

CHIP_SIZE = 112
EMBEDDING_SIZE = 128
CHIP_KIND = "arcface112"

EncoderRuntime = Literal["tensorflow", "tflite"]

LAYERS: tuple[tuple[int, int, bool], ...] = (
    # (filters, stride, depthwise) of the 27 conv layers, in order
    (32, 1, False),
    (32, 1, True),
    (64, 1, False),
    (64, 2, True),
    (128, 1, False),
    (128, 1, True),
    (128, 1, False),
    (128, 2, True),
    (256, 1, False),
    (256, 1, True),
    (256, 1, False),
    (256, 2, True),
    (512, 1, False),
    *((512, 1, True), (512, 1, False)) * 5,
    (512, 2, True),
    (1024, 1, False),
    (1024, 1, True),
    (1024, 1, False),
)


def build_sface(weights: Mapping[str, np.ndarray] | None = None) -> keras.Model:
    """(None, 112, 112, 3) RGB 0..255 -> (None, 128), before normalisation (what the ONNX gives).

    Every 3x3 conv pads one pixel on each side (the ONNX ``pads``); Keras' ``same`` pads only the
    bottom/right for stride 2, hence the explicit ZeroPadding2D.
    """
    inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), dtype="float32", name="rgb")
    x = keras.layers.Rescaling(INPUT_SCALE, -INPUT_MEAN * INPUT_SCALE, name="normalize")(inputs)
    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    for index, (filters, stride, depthwise) in enumerate(LAYERS):
        name = f"layer{index:02d}"
        size = 3 if depthwise or index == 0 else 1
        if size == 3:
            x = keras.layers.ZeroPadding2D(1)(x)
        conv = (
            keras.layers.DepthwiseConv2D(size, stride, padding="valid", name=name)
            if depthwise
            else keras.layers.Conv2D(filters, size, stride, padding="valid", name=name)
        )
        x = conv(x)
        prelu = keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")
        x = prelu(x)
        if weights is not None:
            assignments.append((conv, [weights[f"{name}/kernel"], weights[f"{name}/bias"]]))
            assignments.append((prelu, [weights[f"{name}/alpha"]]))
    x = keras.layers.Flatten()(x)
    fc = keras.layers.Dense(EMBEDDING_SIZE, name="fc")
    outputs = fc(x)
    if weights is not None:
        assignments.append((fc, [weights["fc/kernel"], weights["fc/bias"]]))
    model = keras.Model(inputs, outputs, name="sface_2021dec")
    for layer, arrays in assignments:
        layer.set_weights([np.asarray(a, np.float32) for a in arrays])
    return model


FLIP_NAME = "sface_2021dec_flip"
"""The flip test-time-augmented encoder's name: its encodings differ from plain SFace's, so a
gallery records which one made them and refuses to mix them (``people reencode`` converts)."""


class SFaceEncoder(FaceEncoder):
    """Maps 112x112 ArcFace-aligned RGB chips to unit 128-d SFace encodings, in batches.

    ``flip``: flip test-time augmentation, the standard practice of ArcFace-family encoders: each
    chip and its left-right mirror image are encoded, the two unit encodings averaged and the
    mean normalised again. The ArcFace template is (nearly) symmetric, so the mirror is another
    aligned view of the same face; averaging cancels part of what one view's pixels and alignment
    add to its encoding, at twice the network work (docs/models.md has the measured gain).
    """

    name = "sface_2021dec"
    """The model in messages, calibration records and stored encodings."""
    chip_kind = CHIP_KIND
    chip_size = CHIP_SIZE

    def __init__(
        self,
        model: keras.Model,
        batch_size: int = 32,
        flip: bool = False,
        lite: LiteRunner | None = None,
    ) -> None:
        self.flip = flip
        if flip:
            self.name = FLIP_NAME
        self.lite = lite
        """The same network run by TensorFlow Lite (shared/face/sface_lite.py); None: by the
        TensorFlow graph of ``model``."""
        super().__init__(model, batch_size)

    def _encode_part(self, chips: np.ndarray) -> np.ndarray:
        if self.lite is None:
            return super()._encode_part(chips)
        if not self.flip:
            return unit_vectors(self.lite(chips))
        both = unit_vectors(self.lite(np.concatenate([chips, chips[:, :, ::-1]])))
        return unit_vectors(both[: len(chips)] + both[len(chips) :])

    def _run(self, chips: tf.Tensor) -> tf.Tensor:
        pixels = tf.cast(chips, tf.float32)
        if not self.flip:
            return tf.math.l2_normalize(self.model(pixels, training=False), axis=1)
        count = tf.shape(pixels)[0]
        both = self.model(tf.concat([pixels, tf.reverse(pixels, axis=[2])], 0), training=False)
        both = tf.math.l2_normalize(both, axis=1)
        return tf.math.l2_normalize(both[:count] + both[count:], axis=1)


def load_sface(
    models_dir: Path | None = None,
    *,
    batch_size: int = 32,
    warm_up: bool = True,
    threads: int | None = None,
    flip: bool = False,
    runtime: EncoderRuntime = "tensorflow",
) -> SFaceEncoder:
    """The ready encoder (``flip``: with flip test-time augmentation, ``runtime``: which engine
    runs it, the same encodings either way); converts the ONNX, and for ``tflite`` the Keras
    model, into ``models_dir`` first if they are not there yet."""
    if threads is not None:
        configure_threads(threads)
    models_dir = models_dir or default_models_dir()
    weights = ensure_sface_weights(models_dir)
    model = build_sface(weights)  # the graph runtime's, the converter's source, training's cut
    lite = None
    if runtime == "tflite":
        model_file = ensure_lite_model(models_dir, weights, model)
        # The same threads as TensorFlow's pool, however this process configured it.
        configured = tf.config.threading.get_intra_op_parallelism_threads()
        lite = LiteRunner(model_file.read_bytes(), threads or configured or os.cpu_count() or 1)
    encoder = SFaceEncoder(model, batch_size, flip=flip, lite=lite)
    if warm_up:
        encoder.warm_up()
    return encoder
