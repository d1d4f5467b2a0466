"""The 128-d face encoder: dlib's face recognition ResNet, rebuilt in Keras with dlib's weights.

dlib's ``dlib_face_recognition_resnet_model_v1`` (99.38% on LFW as published) is the network of
examples/dnn_face_recognition_ex.cpp. Its pretrained float weights are converted once from the
pinned .dat file (shared/face/model_files.py) and loaded into the same graph built here, so the
project gets dlib's embeddings from TensorFlow: batched, on the same runtime as the other models,
and without dlib at inference time.

Input: (N, 150, 150, 3) RGB face chips aligned the way ``dlib.get_face_chip(img, shape, 150, 0.25)``
aligns them. Output: (N, 128) float32, NOT L2-normalised: dlib's loss_metric hands out the fc
output as it is (norms 1.23 to 1.65 on LFW), and its 0.6 threshold is on that raw Euclidean
distance. Normalising would change every distance the threshold was trained for.

Shapes through the network (rows x cols x channels, dlib's padding rules, see docs/encoder.md):
150x150x3 -> con 7x7/2 -> 72x72x32 -> max_pool 3x3/2 -> 35x35x32 -> 3 blocks at 32 -> down 17x17x64
-> 3 blocks -> down 8x8x128 -> 2 blocks -> down 4x4x256 -> 2 blocks -> down 2x2x256 -> mean -> 256
-> fc -> 128.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from shared.face.dlib_format import FACE_RESNET_STAGES
from shared.face.model_files import ensure_weights
from shared.model_cache import default_models_dir

log = logging.getLogger(__name__)

CHIP_SIZE = 150
EMBEDDING_SIZE = 128
DISTANCE_THRESHOLD = 0.6
"""dlib's threshold on the Euclidean distance between two encodings: below means same person."""
DEFAULT_MEAN_RGB = (122.782, 117.001, 104.298)
"""input_rgb_image_sized's per-channel means; the converted file carries the same values."""


@keras.saving.register_keras_serializable(package="facestream")
class DlibInputNormalization(keras.layers.Layer):
    """(pixel - mean) / 256 per RGB channel, as input_rgb_image_sized computes it.

    Done in float32 like dlib (the subtraction is in float, the /256 is exact), and inside the
    model so callers pass raw 0..255 pixels (uint8 or float) and cannot forget or repeat it.
    """

    def __init__(self, mean_rgb: tuple[float, float, float] = DEFAULT_MEAN_RGB, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean_rgb = tuple(float(v) for v in mean_rgb)

    def call(self, inputs):
        pixels = keras.ops.cast(inputs, "float32")
        mean = keras.ops.convert_to_tensor(np.asarray(self.mean_rgb, dtype=np.float32))
        return (pixels - mean) * (1.0 / 256.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "mean_rgb": self.mean_rgb}


@keras.saving.register_keras_serializable(package="facestream")
class ChannelAffine(keras.layers.Layer):
    """dlib's affine_ in CONV_MODE: y = gamma * x + beta per channel (a frozen batch norm).

    Only used when the affine layers are not folded into the convolutions before them.
    """

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="facestream")
class ZeroPadTo(keras.layers.Layer):
    """Zero-pad NHWC at the bottom, right and channel end up to a target (rows, cols, channels).

    dlib's add_prev_ adds tensors of different shapes by treating what one lacks as zeros, aligned
    at index 0 (cpu::add). In the face ResNet that happens in every residual_down (the shortcut
    has half the channels) and, in the last two, in rows and columns too: the strided 3x3 conv
    gives 3x3 (and 1x1) where the 2x2 average pool of the shortcut gives 4x4 (and 2x2).
    """

    def __init__(self, target: tuple[int, int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.target = tuple(int(v) for v in target)

    def call(self, inputs):
        _, rows, cols, channels = inputs.shape
        pads = [(0, 0)] + [
            (0, t - s) for t, s in zip(self.target, (rows, cols, channels), strict=True)
        ]
        return keras.ops.pad(inputs, pads)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.target)

    def get_config(self) -> dict:
        return {**super().get_config(), "target": self.target}


class _Builder:
    """Adds layers in dlib's forward order and remembers which converted arrays each one takes."""

    def __init__(self, weights: Mapping[str, np.ndarray] | None, fold_affine: bool) -> None:
        self.weights = weights
        self.fold_affine = fold_affine
        self.assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
        self.conv_index = 0
        self.affine_index = 0

    def take(self, prefix: str, *names: str) -> list[np.ndarray] | None:
        """The named converted arrays, or None when building without weights."""
        if self.weights is None:
            return None
        return [np.asarray(self.weights[f"{prefix}/{name}"], np.float32) for name in names]

    def conv_affine(self, x, filters: int, size: int, stride: int):
        """con_ (padding size//2 when stride is 1, else 0: con_'s default) followed by affine_."""
        conv_name = f"con{self.conv_index:02d}"
        affine_name = f"affine{self.affine_index:02d}"
        self.conv_index += 1
        self.affine_index += 1
        padding = "same" if stride == 1 else "valid"
        conv = keras.layers.Conv2D(filters, size, stride, padding=padding, name=conv_name)
        y = conv(x)
        kernel_bias = self.take(conv_name, "kernel", "bias")
        gamma_beta = self.take(affine_name, "gamma", "beta")
        if self.fold_affine:
            if kernel_bias is not None and gamma_beta is not None:
                (kernel, bias), (gamma, beta) = kernel_bias, gamma_beta
                kernel_bias = [kernel * gamma, bias * gamma + beta]
            self.assign(conv, kernel_bias)
            return y
        affine = ChannelAffine(name=affine_name)
        self.assign(conv, kernel_bias)
        y = affine(y)
        self.assign(affine, gamma_beta)
        return y

    def assign(self, layer: keras.layers.Layer, arrays: list[np.ndarray] | None) -> None:
        if arrays is not None:
            self.assignments.append((layer, arrays))

    def residual(self, x, filters: int, down: bool):
        """ares / ares_down: relu(block(x) + shortcut), shortcut = x or avg_pool 2x2/2 of x."""
        y = self.conv_affine(x, filters, 3, 2 if down else 1)
        y = keras.layers.ReLU()(y)
        y = self.conv_affine(y, filters, 3, 1)
        shortcut = keras.layers.AveragePooling2D(2, 2, padding="valid")(x) if down else x
        target = tuple(max(a, b) for a, b in zip(y.shape[1:], shortcut.shape[1:], strict=True))
        if tuple(y.shape[1:]) != target:
            y = ZeroPadTo(target)(y)
        if tuple(shortcut.shape[1:]) != target:
            shortcut = ZeroPadTo(target)(shortcut)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def build_dlib_resnet(
    weights: Mapping[str, np.ndarray] | None = None, *, fold_affine: bool = True
) -> keras.Model:
    """The face ResNet as a Keras model: (None,150,150,3) RGB 0..255 -> (None,128) float32.

    The input may be float32 or uint8 pixel values; normalisation happens inside. ``weights`` are
    the converted arrays (model_files.load_weights); None leaves Keras' random initialisation,
    which is only useful for shape checks. ``fold_affine`` multiplies each affine layer into the
    convolution before it (exact up to float rounding; saves 29 passes over the activations).
    """
    mean_rgb = DEFAULT_MEAN_RGB if weights is None else tuple(weights["input/mean_rgb"])
    builder = _Builder(weights, fold_affine)
    inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), dtype="float32", name="rgb")
    x = DlibInputNormalization(mean_rgb, name="normalize")(inputs)
    x = keras.layers.ReLU()(builder.conv_affine(x, 32, 7, 2))
    x = keras.layers.MaxPooling2D(3, 2, padding="valid")(x)
    for filters, blocks, down in FACE_RESNET_STAGES:
        if down:
            x = builder.residual(x, filters, down=True)
        for _ in range(blocks):
            x = builder.residual(x, filters, down=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    fc = keras.layers.Dense(EMBEDDING_SIZE, use_bias=False, name="fc")
    outputs = fc(x)
    builder.assign(fc, builder.take("fc", "kernel"))
    model = keras.Model(inputs, outputs, name="dlib_face_resnet_v1")
    for layer, arrays in builder.assignments:
        layer.set_weights(arrays)
    return model


def configure_threads(intra_op: int, inter_op: int | None = None) -> bool:
    """Size TensorFlow's thread pools; False if TF already ran an op and kept its settings.

    TF's default, one intra-op thread per core, is right for one encoder per machine (on the
    2-core host, 2; pinning inter-op to 1 made no measurable difference). Where several worker
    processes share the cores, give each ``intra_op = cores // workers`` so they do not
    oversubscribe. Must run before TF's first op in the process.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        log.warning("TensorFlow already initialised; thread settings left as they are")
        return False
    return True


def check_chips(chips: np.ndarray, size: int) -> np.ndarray:
    """``chips`` as an (N, size, size, 3) uint8 RGB array; ValueError naming the shape otherwise."""
    chips = np.asarray(chips)
    if chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
        raise ValueError(f"face chips must be (N, {size}, {size}, 3) RGB, got shape {chips.shape}")
    if chips.dtype != np.uint8:
        raise ValueError(f"face chips must be uint8 RGB pixels, got {chips.dtype}")
    return chips


class FaceEncoder:
    """Maps aligned 150x150 RGB face chips to dlib's 128-d encodings, in batches.

    One traced ``tf.function`` with a free batch dimension serves every batch size, so a call
    costs the graph run and not Keras' ``predict`` set-up per call. Other encoders subclass it and
    set ``name``, ``chip_kind``, ``chip_size`` and ``_run`` (shared/face/sface.py).
    """

    name = "dlib_face_recognition_resnet_model_v1"
    """The model in messages and calibration records."""
    chip_kind = "dlib150"
    """The aligned chip it takes (shared/face/chip_kinds.py)."""
    chip_size = CHIP_SIZE

    def __init__(self, model: keras.Model, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.batch_size = batch_size
        spec = tf.TensorSpec((None, self.chip_size, self.chip_size, 3), tf.uint8)
        self._forward = tf.function(self._run, input_signature=[spec])

    def _run(self, chips: tf.Tensor) -> tf.Tensor:
        return self.model(tf.cast(chips, tf.float32), training=False)

    def encode(self, chips: np.ndarray) -> np.ndarray:
        """(N, chip_size, chip_size, 3) uint8 RGB chips -> (N,128) float32 encodings (N may be 0)."""
        chips = check_chips(chips, self.chip_size)
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        parts = [
            self._encode_part(chips[start : start + self.batch_size])
            for start in range(0, len(chips), self.batch_size)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _encode_part(self, chips: np.ndarray) -> np.ndarray:
        """At most ``batch_size`` checked chips -> their encodings."""
        return self._forward(tf.convert_to_tensor(chips)).numpy()

    def warm_up(self) -> None:
        """Trace the graph now rather than on the first real frame."""
        self.encode(np.zeros((1, self.chip_size, self.chip_size, 3), np.uint8))


def load_encoder(
    models_dir: Path | None = None,
    *,
    batch_size: int = 32,
    fold_affine: bool = True,
    warm_up: bool = True,
    threads: int | None = None,
) -> FaceEncoder:
    """The ready encoder; converts dlib's .dat into ``models_dir`` first if it is not there yet.

    ``models_dir`` defaults to the setting ``face.models_dir`` (~/.cache/facestream/models).
    ``threads`` sets TF's intra-op pool (see configure_threads); None keeps TF's default.
    Raises model_files.ModelFileError with the command to run when the weights are wrong.
    """
    if threads is not None:
        configure_threads(threads)
    weights = ensure_weights(models_dir or default_models_dir())
    encoder = FaceEncoder(build_dlib_resnet(weights, fold_affine=fold_affine), batch_size)
    if warm_up:
        encoder.warm_up()
    return encoder
