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
8 are padded by reflection and cropped back. Weights live in small ``.npz`` files (float16 on disk),
committed under ``shared/style/networks/`` with a model card in ``docs/style.md``; a sha256 of every
file is checked on load so a truncated or swapped file fails loudly.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from shared.model_cache import npz_bytes, sha256_file, write_atomically
from shared.style.catalog import NETWORKS_DIR, available_networks
from shared.style.vgg import StyleModelError

MAX_IMAGE_SIDE = 1920
DOWNSAMPLINGS = 3
MULTIPLE = 2**DOWNSAMPLINGS


class StyleNetworkError(StyleModelError):
    """A style network that is unknown, missing or does not match its recorded hash."""


@dataclass(frozen=True)
class Architecture:
    """Channel widths of the network: ``widths[i]`` after the i-th downsampling (0 = full res)."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    residual_blocks: int = 4
    edge_kernel: int = 5
    """Kernel size of the first and last (full-resolution) convolutions; Johnson used 9."""

    def to_json(self) -> dict:
        return {
            "widths": list(self.widths),
            "residual_blocks": self.residual_blocks,
            "edge_kernel": self.edge_kernel,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Architecture:
        return cls(tuple(data["widths"]), int(data["residual_blocks"]), int(data["edge_kernel"]))


class InstanceNormalization(tf.keras.layers.Layer):
    """Per-image, per-channel normalisation over H and W with a learned scale and offset."""

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        mean, variance = tf.nn.moments(inputs, axes=[1, 2], keepdims=True)
        return self.scale * (inputs - mean) * tf.math.rsqrt(variance + 1e-5) + self.offset


def _conv_norm(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    x = tf.keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = InstanceNormalization(name=f"{name}_norm")(x)
    return tf.keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def build_network(architecture: Architecture = Architecture()) -> tf.keras.Model:
    """(B, H, W, 3) RGB in [0, 255], H and W multiples of 8 -> stylized RGB in [0, 255]."""
    keras = tf.keras
    widths, edge = architecture.widths, architecture.edge_kernel
    if len(widths) != DOWNSAMPLINGS + 1:
        raise ValueError(f"widths needs {DOWNSAMPLINGS + 1} entries, got {widths}")
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_in")(inputs)
    x = _conv_norm(x, widths[0], edge, 1, "in")
    for level in range(1, DOWNSAMPLINGS + 1):
        x = _conv_norm(x, widths[level], 3, 2, f"down{level}")
    for block in range(architecture.residual_blocks):
        y = _conv_norm(x, widths[-1], 3, 1, f"res{block}a")
        y = _conv_norm(y, widths[-1], 3, 1, f"res{block}b", relu=False)
        x = keras.layers.Add(name=f"res{block}_add")([x, y])
    for level in range(DOWNSAMPLINGS - 1, -1, -1):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}_resize")(x)
        x = _conv_norm(x, widths[level], 3, 1, f"up{level}")
    x = keras.layers.Conv2D(3, edge, padding="same", activation="tanh", name="out_conv")(x)
    outputs = keras.layers.Rescaling(127.5, offset=127.5, name="scale_out")(x)
    return keras.Model(inputs, outputs, name="fast_style")


def padded_shape(height: int, width: int) -> tuple[int, int]:
    """The smallest multiple-of-8 shape that holds a frame."""
    return -(-height // MULTIPLE) * MULTIPLE, -(-width // MULTIPLE) * MULTIPLE


class StyleNetwork:
    """A trained feed-forward style network, ready to paint RGB uint8 frames of any size."""

    def __init__(self, name: str, model: tf.keras.Model, card: Mapping) -> None:
        self.name = name
        self.model = model
        self.card = dict(card)
        self._run = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)

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
        painted = self._run(tf.constant(batch)).numpy()[:, :height, :width]
        return np.clip(np.rint(painted), 0, 255).astype(np.uint8)


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


def load_network(name: str, directory: Path = NETWORKS_DIR) -> StyleNetwork:
    """Build the network ``name`` and load its checked weights; ``StyleNetworkError`` otherwise."""
    card_path, weights_path = directory / f"{name}.json", directory / f"{name}.npz"
    if not card_path.exists() or not weights_path.exists():
        known = ", ".join(available_networks(directory)) or "none"
        raise StyleNetworkError(f"no style network {name!r} in {directory} (available: {known})")
    card = json.loads(card_path.read_text())
    data = weights_path.read_bytes()
    if sha256_file(weights_path) != card.get("sha256"):
        raise StyleNetworkError(
            f"{weights_path} does not match the sha256 in {card_path.name}: the file is damaged "
            "or was replaced; restore it from git or retrain it"
        )
    model = build_network(Architecture.from_json(card["architecture"]))
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        stored = {key: archive[key] for key in archive.files}
    for variable in model.weights:
        if variable.path not in stored:
            raise StyleNetworkError(f"{weights_path} lacks {variable.path}")
        variable.assign(stored[variable.path].astype(np.float32))
    return StyleNetwork(name, model, card)
