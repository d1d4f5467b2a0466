"""SFace run by TensorFlow Lite (XNNPACK) instead of a TensorFlow graph: the same encodings, faster.

Why: the recognizer spends nearly all its CPU in SFace (bench/README.md, issue 15), and SFace is
27 small and depthwise convolutions, which TensorFlow's CPU kernels run poorly one chip at a
time. XNNPACK, TensorFlow Lite's CPU backend, runs the same float32 network in 22 ms of CPU a
chip where the TensorFlow graph takes 48 (one thread, this VM; ``python -m bench.encoder``).

The ``.tflite`` file is converted once from the Keras model built from the hash-checked SFace
arrays (shared/face/sface_files.py) and checked against it before it is written: the unit
encodings of a fixed set of chips must agree within ``MAX_DIFFERENCE`` (float32 round-off: the
conversion changes no weight, only the order of the arithmetic), so every calibration and stored
encoding stays valid. A manifest records the file's SHA-256 and the arrays it came from; a file
that does not match is converted again, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from shared.face.model_files import content_digest
from shared.model_cache import write_atomically

LITE_FILE = "face_recognition_sface_2021dec.tflite"
LITE_MANIFEST = "face_recognition_sface_2021dec.tflite.json"
FORMAT_VERSION = 1
MAX_DIFFERENCE = 1e-4
"""Largest difference allowed between a TFLite and a Keras unit encoding (measured: 5e-6)."""
CHECK_CHIPS = 8


def ensure_lite_model(
    models_dir: Path, weights: Mapping[str, np.ndarray], model: keras.Model
) -> Path:
    """The ``.tflite`` file for these SFace arrays (``model``: the Keras SFace built from them),
    converted and checked first if it is missing, damaged or made from other arrays."""
    path = Path(models_dir) / LITE_FILE
    source = content_digest(weights)
    if _matches(path, Path(models_dir) / LITE_MANIFEST, source):
        return path
    data = _convert(model)
    write_atomically(path, data)
    manifest = {
        "format": FORMAT_VERSION,
        "file": LITE_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source_content_sha256": source,
    }
    write_atomically(Path(models_dir) / LITE_MANIFEST, json.dumps(manifest, indent=2).encode())
    return path


def _matches(path: Path, manifest_path: Path, source: str) -> bool:
    try:
        manifest = json.loads(manifest_path.read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return False
    return (
        manifest.get("format") == FORMAT_VERSION
        and manifest.get("source_content_sha256") == source
        and hashlib.sha256(data).hexdigest() == manifest.get("sha256")
    )


def _convert(model: keras.Model) -> bytes:
    """The Keras SFace as a float32 TFLite flatbuffer, refused unless it encodes like Keras."""
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the traced graph's signature
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    chips = np.random.default_rng(0).integers(0, 256, (CHECK_CHIPS, 112, 112, 3), np.uint8)
    expected = unit_vectors(model(chips.astype(np.float32), training=False).numpy())
    found = unit_vectors(LiteRunner(data, threads=1)(chips))
    difference = float(np.abs(found - expected).max())
    if difference > MAX_DIFFERENCE:
        raise RuntimeError(
            f"the TFLite SFace differs from the Keras one by {difference:.1e} (> {MAX_DIFFERENCE})"
        )
    return data


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (SFace's encodings are compared as unit vectors)."""
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class LiteRunner:
    """One TFLite interpreter with a fixed (1, 112, 112, 3) input, run chip by chip.

    One chip at a time because XNNPACK gains nothing from batching this network (22-23 ms a chip
    alone or in batches of 4, 8 or 32 when tried) and a fixed shape never re-allocates. An interpreter is not
    thread-safe, so calls are serialised (the API's threads share one encoder)."""

    def __init__(self, model: bytes, threads: int | None) -> None:
        with warnings.catch_warnings():  # its successor, ai-edge-litert, is not a dependency
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            self._interpreter = tf.lite.Interpreter(model_content=model, num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB chips -> (N, 128) float32 SFace outputs, not normalised."""
        outputs = np.empty((len(chips), 128), np.float32)
        with self._lock:
            for i, chip in enumerate(chips):
                self._interpreter.set_tensor(self._input, chip[None].astype(np.float32))
                self._interpreter.invoke()
                outputs[i] = self._interpreter.get_tensor(self._output)[0]
        return outputs
