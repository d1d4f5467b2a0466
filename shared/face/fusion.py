"""Several encodings of one face -> one template (track-level fusion, multi-photo enrollment).

Why: a single frame's encoding carries that frame's pose, blur and lighting; the mean of several
unit encodings cancels much of it, so a track (or a person enrolled from several photos) is
matched as one better vector instead of by per-frame votes. Each encoding is put on the unit
sphere first so that no frame weighs more just because its vector is longer, the mean is
weighted by quality (detector score, face size), and the result is scaled back to the mean norm
of its inputs so that it lives where the encoder's own encodings do and the encoder's calibrated
distances (tau, the 1:K threshold) keep their meaning.
"""

from __future__ import annotations

import numpy as np


def fuse_encodings(encodings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(N, D) encodings and N non-negative weights (None: equal) -> one (D,) float32 encoding.

    The direction is the weighted mean of the unit encodings; the length is the weighted mean
    of the inputs' lengths (1 for encoders with unit outputs).
    """
    encodings = np.asarray(encodings, np.float64)
    if encodings.ndim != 2 or len(encodings) == 0:
        raise ValueError(f"need a non-empty (N, D) array of encodings, got shape {encodings.shape}")
    w = np.ones(len(encodings)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(encodings),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be N finite non-negative numbers with a positive sum")
    norms = np.linalg.norm(encodings, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("encodings must be finite and non-zero")
    w = w / w.sum()
    direction = (w[:, None] * encodings / norms[:, None]).sum(axis=0)
    length = np.linalg.norm(direction)
    if length == 0:
        raise ValueError("the encodings cancel out: no common direction")
    return (direction / length * float(w @ norms)).astype(np.float32)
