"""Feed-forward style networks (Johnson, Alahi and Fei-Fei 2016): one forward pass paints a frame.

Gatys' optimisation takes ~35 s per 256 px image; a network trained to minimise the same J(G)
(``training.style.training``) paints a 640x360 frame in tens of milliseconds, which is what a live
camera needs. Johnson's layout is kept (downsample, residual blocks, upsample, instance
normalisation) but sized for a 2-core CPU:

- three stride-2 downsamplings instead of two, so the residual blocks run at 1/8 resolution where
  they are cheap; full-resolution layers have few channels;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions,
  which avoids their checkerboard artefacts (Odena et al. 2016);
- instance normalisation (Ulyanov et al. 2016): contrast of each content image is normalised
  away, which is what makes a single style network work on any frame.

The network is fully convolutional: any frame size works. Frames whose sides are not multiples of
8 are padded by reflection and cropped back. On CPUs with bfloat16 instructions (AVX512-BF16,
AMX) the layers compute in bfloat16 (``precision="auto"``): 1.5-1.8x the frames per second of
float32, within a grey level of its output on average; the instance norms' statistics stay in
float32, and for one frame they take the fused batch-norm kernel (docs/style.md, "Speed of the
networks"). Weights live in small ``.npz`` files (float16 on disk),
committed under ``shared/style/networks/`` with a model card in ``docs/style.md``; a sha256 of every
file is checked on load so a truncated or swapped file fails loudly.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import tensorflow as tf

from shared.model_cache import npz_bytes, sha256_file, write_atomically
from shared.style.catalog import NETWORKS_DIR, Precision, available_networks
from shared.style.vgg import StyleModelError

MAX_IMAGE_SIDE = 1920
DOWNSAMPLINGS = 3
MULTIPLE = 2**DOWNSAMPLINGS

BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic. Without them oneDNN emulates
bfloat16 and runs it slower than float32, so ``auto`` stays in float32 there."""


class StyleNetworkError(StyleModelError):
    """A style network that is unknown, missing or does not match its recorded hash."""


@dataclass(frozen=True)
class Architecture:
    """Channel widths of the network: ``widths[i]`` after the i-th downsampling (0 = full res)."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    residual_blocks: int = 4
    edge_kernel: int = 5
    """Kernel size of the first and last (full-resolution) convolutions; Johnson used 9."""
    padding: Literal["zeros", "reflect"] = "reflect"
    """How convolutions see past the frame's edge. Zeros let a network find the edge and paint
    a band along it (the style cost does not mind where a colour is); a reflection looks like
    more picture. ``reflect`` keeps zeros in the last two convolutions only (full resolution,
    after the last upsampling): they can find no more than the outer 3 pixels, and their
    reflections would cost a fifth of the frame rate. The networks of 2026-12-03 and before
    used zeros throughout."""

    def to_json(self) -> dict:
        return {
            "widths": list(self.widths),
            "residual_blocks": self.residual_blocks,
            "edge_kernel": self.edge_kernel,
            "padding": self.padding,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Architecture:
        return cls(
            tuple(data["widths"]),
            int(data["residual_blocks"]),
            int(data["edge_kernel"]),
            data.get("padding", "zeros"),
        )


class InstanceNormalization(tf.keras.layers.Layer):
    """Per-image, per-channel normalisation over H and W with a learned scale and offset."""

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        scale, offset = tf.cast(self.scale, tf.float32), tf.cast(self.offset, tf.float32)
        if inputs.shape[0] == 1:
            # One image (how StyleNetwork paints): its batch statistics are its instance
            # statistics, and the fused batch-norm kernel computes them in one pass, in float32
            # whatever the input type: 1.3x the network's frames per second of the general path.
            normalized, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=scale,
                offset=offset,
                mean=tf.constant([], tf.float32),
                variance=tf.constant([], tf.float32),
                epsilon=1e-5,
                is_training=True,
            )
            return normalized
        # Statistics in float32 whatever the compute type: a bfloat16 mean over 230k positions
        # loses the small variances of flat regions. Applied as one multiply-add in the input's
        # type, which is also cheaper than subtracting and scaling separately.
        mean, variance = tf.nn.moments(tf.cast(inputs, tf.float32), axes=[1, 2], keepdims=True)
        gain = scale * tf.math.rsqrt(variance + 1e-5)
        shift = offset - mean * gain
        return inputs * tf.cast(gain, inputs.dtype) + tf.cast(shift, inputs.dtype)


class ReflectionPadding(tf.keras.layers.Layer):
    """Pads H and W by reflection: ``before`` rows/columns on top/left, ``after`` on bottom/right."""

    def __init__(self, before: int, after: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.before, self.after = before, after

    def call(self, inputs):
        edges = [self.before, self.after]
        return tf.pad(inputs, [[0, 0], edges, edges, [0, 0]], mode="REFLECT")


def _conv(x, filters: int, kernel: int, stride: int, name: str, dtype: str, padding: str, **kw):
    """A convolution whose output has ``ceil(size / stride)`` positions, as Keras' "same", and
    the same alignment (a stride-2 window starts on the first pixel); with ``padding="reflect"``
    the margin is the picture reflected instead of zeros."""
    if padding == "reflect":
        total = kernel - stride  # what "same" pads in all, sizes being multiples of the stride
        x = ReflectionPadding(total // 2, total - total // 2, name=f"{name}_pad", dtype=dtype)(x)
    conv = tf.keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid" if padding == "reflect" else "same",
        name=name,
        dtype=dtype,
        **kw,
    )
    return conv(x)


def _conv_norm(
    x, filters: int, kernel: int, stride: int, name: str, dtype: str, padding: str, relu=True
):
    x = _conv(x, filters, kernel, stride, f"{name}_conv", dtype, padding, use_bias=False)
    x = InstanceNormalization(name=f"{name}_norm", dtype=dtype)(x)
    return tf.keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x) if relu else x


def build_network(
    architecture: Architecture = Architecture(), precision: Precision = "float32"
) -> tf.keras.Model:
    """(B, H, W, 3) RGB in [0, 255], H and W multiples of 8 -> stylized RGB in [0, 255], float32.

    ``precision`` is the layers' compute type (``auto``: ``resolve_precision``); the variables
    are float32 either way, so the same weights load into both and training stays in float32.
    """
    layers = tf.keras.layers
    dtype = "mixed_bfloat16" if resolve_precision(precision) == "bfloat16" else "float32"
    widths, edge = architecture.widths, architecture.edge_kernel
    if len(widths) != DOWNSAMPLINGS + 1:
        raise ValueError(f"widths needs {DOWNSAMPLINGS + 1} entries, got {widths}")
    inputs = tf.keras.Input((None, None, 3))
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_in", dtype=dtype)(inputs)
    pad = architecture.padding
    x = _conv_norm(x, widths[0], edge, 1, "in", dtype, pad)
    for level in range(1, DOWNSAMPLINGS + 1):
        x = _conv_norm(x, widths[level], 3, 2, f"down{level}", dtype, pad)
    for block in range(architecture.residual_blocks):
        y = _conv_norm(x, widths[-1], 3, 1, f"res{block}a", dtype, pad)
        y = _conv_norm(y, widths[-1], 3, 1, f"res{block}b", dtype, pad, relu=False)
        x = layers.Add(name=f"res{block}_add", dtype=dtype)([x, y])
    for level in range(DOWNSAMPLINGS - 1, -1, -1):
        upsample = layers.UpSampling2D(2, name=f"up{level}_resize", dtype=dtype)
        x = _conv_norm(
            upsample(x), widths[level], 3, 1, f"up{level}", dtype, pad if level else "zeros"
        )
    x = _conv(x, 3, edge, 1, "out_conv", dtype, "zeros", activation="tanh")
    outputs = layers.Rescaling(127.5, offset=127.5, name="scale_out", dtype="float32")(x)
    return tf.keras.Model(inputs, outputs, name="fast_style")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags; empty where the file is missing (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def resolve_precision(
    precision: Precision, flags: frozenset[str] | None = None
) -> Literal["float32", "bfloat16"]:
    """``auto`` -> ``bfloat16`` where the CPU has native bfloat16 arithmetic, else ``float32``."""
    if precision != "auto":
        return precision
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if flags & BFLOAT16_CPU_FLAGS else "float32"


def padded_shape(height: int, width: int) -> tuple[int, int]:
    """The smallest multiple-of-8 shape that holds a frame, at least 16 px a side: a reflection
    needs two positions at 1/8 resolution."""
    side = lambda size: max(2 * MULTIPLE, -(-size // MULTIPLE) * MULTIPLE)  # noqa: E731
    return side(height), side(width)


class StyleNetwork:
    """A trained feed-forward style network, ready to paint RGB uint8 frames of any size."""

    def __init__(
        self,
        name: str,
        model: tf.keras.Model,
        card: Mapping,
        precision: Literal["float32", "bfloat16"] = "float32",
    ) -> None:
        self.name = name
        self.model = model
        self.card = dict(card)
        self.precision = precision
        # One frame per call, batch dimension fixed at 1: the instance norms then take their
        # fused kernel (InstanceNormalization.call); on a CPU, a batch gains nothing per frame.
        self._run = tf.function(
            lambda frame: model(frame, training=False),
            input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)],
        )

    def stylize(self, rgb: np.ndarray, max_side: int | None = MAX_IMAGE_SIDE) -> np.ndarray:
        """(H, W, 3) RGB uint8 -> the frame painted in the network's style.

        Images whose longest side exceeds ``max_side`` are shrunk to it first: memory grows with
        the pixel count (a 12 MP photo needs gigabytes of activations), the painting does not
        gain from it.
        """
        scale = max_side / max(rgb.shape[:2]) if max_side else 1.0
        if scale < 1.0:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return self.stylize_batch(rgb[None])[0]

    def stylize_batch(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) RGB uint8 frames of one size -> stylized (B, H, W, 3) uint8."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (B, H, W, 3) RGB frames, got shape {frames.shape}")
        height, width = frames.shape[1:3]
        target_h, target_w = padded_shape(height, width)
        batch = frames.astype(np.float32)
        if (target_h, target_w) != (height, width):
            pad = ((0, 0), (0, target_h - height), (0, target_w - width), (0, 0))
            batch = np.pad(batch, pad, mode="reflect" if min(height, width) > 8 else "edge")
        painted = np.concatenate([self._run(tf.constant(frame[None])).numpy() for frame in batch])
        return np.clip(np.rint(painted[:, :height, :width]), 0, 255).astype(np.uint8)


def weights_of(model: tf.keras.Model) -> dict[str, np.ndarray]:
    """Every variable of the network by its path, as float16 (half the size, no visible change)."""
    return {v.path: v.numpy().astype(np.float16) for v in model.weights}


def save_network(
    model: tf.keras.Model, architecture: Architecture, card: Mapping, directory: Path, name: str
) -> Path:
    """Write ``NAME.npz`` and ``NAME.json`` (card + architecture + the npz's sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npz"
    write_atomically(path, npz_bytes(weights_of(model)))
    record = {**card, "architecture": architecture.to_json(), "sha256": sha256_file(path)}
    write_atomically(directory / f"{name}.json", json.dumps(record, indent=2).encode() + b"\n")
    return path


def load_network(
    name: str, directory: Path = NETWORKS_DIR, precision: Precision = "auto"
) -> StyleNetwork:
    """Build the network ``name`` and load its checked weights; ``StyleNetworkError`` otherwise.

    ``precision``: the compute type painting runs in (``build_network``)."""
    card, weights = read_network(name, directory)
    compute = resolve_precision(precision)
    model = build_network(Architecture.from_json(card["architecture"]), precision=compute)
    assign_weights(model, weights, str(directory / f"{name}.npz"))
    return StyleNetwork(name, model, card, compute)


def read_network(name: str, directory: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The card and the weights of ``name``, the weights checked against the card's sha256;
    ``StyleNetworkError`` when either is missing or they disagree."""
    card_path, weights_path = directory / f"{name}.json", directory / f"{name}.npz"
    if not card_path.exists() or not weights_path.exists():
        known = ", ".join(available_networks(directory)) or "none"
        raise StyleNetworkError(f"no style network {name!r} in {directory} (available: {known})")
    card = json.loads(card_path.read_text())
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise StyleNetworkError(
            f"{weights_path} does not match the sha256 in {card_path.name}: the file is damaged "
            "or was replaced; restore it from git or retrain it"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return card, {key: archive[key] for key in archive.files}


def assign_weights(model: tf.keras.Model, weights: Mapping[str, np.ndarray], origin: str) -> None:
    """Every variable of ``model`` from ``weights`` by path (``weights_of``): the same widths and
    blocks load whatever the padding or precision; a missing one raises ``StyleNetworkError``."""
    for variable in model.weights:
        if variable.path not in weights:
            raise StyleNetworkError(f"{origin} lacks {variable.path}")
        variable.assign(np.asarray(weights[variable.path], np.float32))
