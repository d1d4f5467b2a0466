"""The liveness model with learned pixel features: a small CNN over the face chips of a window,
beside the temporal convolution over the motion features.

What a recapture changes in the pixels and a hand-made number misses: the screen's subpixel
grid and its moire, the display's colour gamut and tone curve, the loss of fine detail of a
second capture (blur, re-compression), specular glare on glass. A small CNN learns these from
the aligned chips the detector already sends (``dataset.small_chip``: 48x48 RGB), on 4 frames
of each 16-frame window (every 4th: the pixels change slowly, the cost stays a quarter).

Layers (output lengths by (N - F) / S + 1, floored; "same" padding: N / S rounded up):

    chip branch, per frame (shared weights), 48x48x3:
      Conv2D(12, 3, S=1, same) 48 -> 48     fine texture at full resolution: grid, moire, grain
      Conv2D(16, 3, S=2, same) 48 -> 24
      Conv2D(24, 3, S=2, same) 24 -> 12
      Conv2D(32, 3, S=2, same) 12 -> 6
      global average pooling    6 -> 1      32 numbers per frame
      mean over the 4 frames                32 numbers per window
    motion branch: the issue-5 TCN (model.py) over (16, 4) -> 32 numbers
    concatenate (64), dropout 0.3, Dense(1): the log-odds of live; calibrated as model.py's.

Per-channel input normalisation is per chip (subtract the chip's mean colour, divide by its
spread): the exposure and white balance of a camera are not liveness, and without this the
network learns which camera filmed the training videos.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from shared.liveness import LivenessModelError
from shared.liveness.features import FEATURE_NAMES, FEATURES
from shared.liveness.model import WINDOW
from shared.model_cache import npz_bytes, sha256_file, write_atomically

PIXEL_FRAMES = (3, 7, 11, 15)
"""Which frames of a window the chip branch sees (the last of every 4)."""
PIXEL_WEIGHTS = Path(__file__).parent / "weights" / "liveness_pixels.npz"

CHIP = 48
"""Side of the chip the pixel model sees: the aligned 150 px chip's central 112 px, resized."""


def chip_centre(aligned_rgb: np.ndarray) -> np.ndarray:
    """(CHIP, CHIP, 3) uint8 RGB from the detector's 150 px aligned chip: its central 112 px
    (the face, little hair or background), resized."""
    return cv2.resize(aligned_rgb[19:131, 19:131], (CHIP, CHIP), interpolation=cv2.INTER_AREA)


def normalise_chips(chips: tf.Tensor) -> tf.Tensor:
    """uint8 (..., H, W, 3) -> float, each chip to zero mean and unit spread per channel."""
    x = tf.cast(chips, tf.float32) / 255.0
    mean = tf.reduce_mean(x, axis=(-3, -2), keepdims=True)
    spread = tf.math.reduce_std(x, axis=(-3, -2), keepdims=True)
    return (x - mean) / (spread + 0.02)


def highpass(chips: tf.Tensor) -> tf.Tensor:
    """Normalised chips minus their 5x5 box blur: the fine texture (grid, moire, grain, the
    sharpness a recapture loses) without the face's shape and colour, which say who and under
    which light, not whether it lives."""
    x = normalise_chips(chips)
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))
    blurred = tf.nn.avg_pool2d(flat, 5, 1, "SAME")
    return tf.reshape(flat - blurred, shape)


def build_pixel_model(
    window: int = WINDOW, texture_only: bool = False, width: int = 1
) -> tf.keras.Model:
    """``texture_only``: the chip branch sees ``highpass`` chips; ``width`` multiplies filters."""
    keras = tf.keras
    motion = keras.Input((window, FEATURES), name="motion")
    chips = keras.Input((len(PIXEL_FRAMES), CHIP, CHIP, 3), dtype="uint8", name="chips")
    frame = keras.Sequential(
        [
            keras.layers.Conv2D(12 * width, 3, padding="same", activation="relu", name="c1"),
            keras.layers.Conv2D(16 * width, 3, 2, padding="same", activation="relu", name="c2"),
            keras.layers.Conv2D(24 * width, 3, 2, padding="same", activation="relu", name="c3"),
            keras.layers.Conv2D(32 * width, 3, 2, padding="same", activation="relu", name="c4"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
        ],
        name="frame_cnn",
    )
    x = keras.layers.Lambda(highpass if texture_only else normalise_chips, name="normalise")(chips)
    x = keras.layers.TimeDistributed(frame, name="per_frame")(x)
    pixels = keras.layers.GlobalAveragePooling1D(name="over_frames")(x)
    m = keras.layers.Conv1D(32, 3, activation="relu", name="conv1")(motion)
    m = keras.layers.Conv1D(32, 3, strides=2, activation="relu", name="conv2")(m)
    m = keras.layers.Conv1D(32, 3, activation="relu", name="conv3")(m)
    m = keras.layers.GlobalAveragePooling1D(name="pool")(m)
    joined = keras.layers.Concatenate(name="join")([m, pixels])
    joined = keras.layers.Dropout(0.3, name="dropout")(joined)
    out = keras.layers.Dense(1, name="live")(joined)
    return keras.Model([motion, chips], out, name="liveness_pixels")


class PixelLivenessModel:
    """Windows of (motion features, chips) -> calibrated P(live)."""

    def __init__(self, model, mean, scale, card: dict, calibration=(1.0, 0.0)) -> None:
        self.model = model
        self.mean = np.asarray(mean, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self.card = card
        self.calibration = calibration
        self.window = WINDOW
        self.needs_chips = True
        self._forward = tf.function(
            lambda motion, chips: self.model([motion, chips], training=False),
            reduce_retracing=True,
        )
        """One traced graph: the eager call costs several times the network itself."""

    def logits(self, motion: np.ndarray, chips: np.ndarray) -> np.ndarray:
        """(B, WINDOW, FEATURES), (B, 4, CHIP, CHIP, 3) uint8 -> (B,) uncalibrated log-odds."""
        standardised = (np.asarray(motion, np.float32) - self.mean) / self.scale
        out = self._forward(tf.constant(standardised), tf.constant(np.asarray(chips, np.uint8)))
        return out.numpy()[:, 0].astype(np.float64)

    def probability_live(self, motion: np.ndarray, chips: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * self.logits(motion, chips) + b)))

    def save(self, path: Path = PIXEL_WEIGHTS) -> None:
        arrays = {v.path: v.numpy() for v in self.model.weights}
        arrays |= {"standardise/mean": self.mean, "standardise/scale": self.scale}
        arrays["calibration/ab"] = np.array(self.calibration, np.float64)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, npz_bytes(arrays))
        card = {**self.card, "features": list(FEATURE_NAMES), "window": WINDOW, "chip": CHIP}
        card["pixel_frames"] = list(PIXEL_FRAMES)
        card["sha256"] = sha256_file(path)
        write_atomically(path.with_suffix(".json"), json.dumps(card, indent=2).encode() + b"\n")


def load_pixel_model(path: Path = PIXEL_WEIGHTS) -> PixelLivenessModel:
    card_path = path.with_suffix(".json")
    if not path.exists() or not card_path.exists():
        raise LivenessModelError(f"no pixel liveness model at {path}")
    card = json.loads(card_path.read_text())
    if sha256_file(path) != card.get("sha256"):
        raise LivenessModelError(f"{path} does not match the sha256 in {card_path.name}")
    model = build_pixel_model(**card.get("options", {}))
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as archive:
        stored = {key: archive[key] for key in archive.files}
    for variable in model.weights:
        variable.assign(stored[variable.path])
    a, b = stored["calibration/ab"]
    return PixelLivenessModel(
        model, stored["standardise/mean"], stored["standardise/scale"], card, (float(a), float(b))
    )


def load_any(path: Path):
    """The liveness model at ``path``: the pixel model if its card says so, else the motion-only
    model (``model.py``), or the recapture model with the motion model (``recapture_model.py``).
    All give ``probability_live``; the pixel one also wants chips, the recapture one cues."""
    from shared.liveness import model_card
    from shared.liveness.model import load_model
    from shared.liveness.recapture_model import load_recapture_liveness

    card = model_card(path)
    if "chip" in card:
        return load_pixel_model(path)
    if "cues" in card:
        return load_recapture_liveness(path)
    return load_model(path)
