"""The liveness sequence model: temporal 1D convolution over a window of per-frame features.

Input: (window, FEATURES) for one track, standardised with the training set's mean and spread
(stored with the weights). Layers and output lengths for a 16-frame window, (N - F) / S + 1 with
N the input length, F the kernel and S the stride (floored), as docs/liveness.md derives:

    Conv1D(32, F=3, S=1)  16 -> 14      local change over 3 frames (a blink, a jerk)
    Conv1D(32, F=3, S=2)  14 -> 6       longer patterns at half the rate
    Conv1D(32, F=3, S=1)   6 -> 4
    GlobalAveragePooling   4 -> 1       the whole window's evidence
    Dense(1)                            the log-odds of live

P(live) = sigmoid(a * logit + b): (a, b) are fitted after training on held-out windows (Platt
scaling, both classes weighted equally), so P = 0.5 sits where the held-out error rates balance.
A network fitted to a few clean training videos is overconfident; its ranking transfers better
than its raw probabilities, and the calibration is what makes one threshold mean the same thing
on new cameras.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.liveness import LivenessModelError
from shared.liveness.features import FEATURE_NAMES, FEATURES
from shared.model_cache import npz_bytes, sha256_file, write_atomically
from shared.settings import LIVENESS_WEIGHTS

WINDOW = 16


def build_model(window: int = WINDOW) -> tf.keras.Model:
    keras = tf.keras
    inputs = keras.Input((window, FEATURES))
    x = keras.layers.Conv1D(32, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv1D(32, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Conv1D(32, 3, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(1, name="live")(x)  # log-odds; P(live) after calibration
    return keras.Model(inputs, outputs, name="liveness_tcn")


class LivenessModel:
    """A trained model with its feature standardisation and calibration: windows -> P(live)."""

    def __init__(
        self,
        model: tf.keras.Model,
        mean: np.ndarray,
        scale: np.ndarray,
        card: dict,
        calibration: tuple[float, float] = (1.0, 0.0),
    ):
        self.model = model
        self.mean = mean.astype(np.float32)
        self.scale = scale.astype(np.float32)
        self.card = card
        self.calibration = calibration
        """(a, b): P(live) = sigmoid(a * logit + b)."""
        self.window = int(model.input_shape[1])

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """(B, window, FEATURES) raw features -> (B,) the network's uncalibrated log-odds."""
        standardised = (np.asarray(windows, np.float32) - self.mean) / self.scale
        return self.model(standardised, training=False).numpy()[:, 0].astype(np.float64)

    def probability_live(self, windows: np.ndarray) -> np.ndarray:
        """(B, window, FEATURES) raw features -> (B,) calibrated P(live)."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * self.logits(windows) + b)))

    def save(self, path: Path = LIVENESS_WEIGHTS) -> None:
        arrays = {v.path: v.numpy() for v in self.model.weights}
        arrays |= {"standardise/mean": self.mean, "standardise/scale": self.scale}
        arrays["calibration/ab"] = np.array(self.calibration, np.float64)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, npz_bytes(arrays))
        card = {**self.card, "features": list(FEATURE_NAMES), "window": self.window}
        card["sha256"] = sha256_file(path)
        write_atomically(path.with_suffix(".json"), json.dumps(card, indent=2).encode() + b"\n")


def load_model(path: Path = LIVENESS_WEIGHTS) -> LivenessModel:
    """The committed (or given) liveness model; LivenessModelError if missing or not matching."""
    card_path = path.with_suffix(".json")
    if not path.exists() or not card_path.exists():
        raise LivenessModelError(
            f"no liveness model at {path}; `facestream liveness-model train --out {path}` trains one"
        )
    card = json.loads(card_path.read_text())
    if sha256_file(path) != card.get("sha256"):
        raise LivenessModelError(f"{path} does not match the sha256 in {card_path.name}")
    if card.get("features") != list(FEATURE_NAMES):
        raise LivenessModelError(f"{path} was trained on other features: {card.get('features')}")
    model = build_model(int(card["window"]))
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as archive:
        stored = {key: archive[key] for key in archive.files}
    for variable in model.weights:
        variable.assign(stored[variable.path])
    a, b = stored["calibration/ab"]
    return LivenessModel(
        model, stored["standardise/mean"], stored["standardise/scale"], card, (float(a), float(b))
    )
