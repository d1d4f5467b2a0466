"""Fitting the binary similarity heads of ``shared.similarity.heads`` (``facestream similarity
train-head``): logistic regression on phi by Newton's method with an L2 penalty, on random and
hard-negative pairs (the pair-level counterpart of triplet mining), and the weights file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.face.verification import Calibration, squared_distances
from shared.similarity.heads import BinaryHead, kind_name, pair_features, sigmoid
from shared.similarity.weights import save_weights


def hard_negative_pairs(
    encodings: np.ndarray, labels: np.ndarray, per_image: int, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) rows: for every row, its ``per_image`` nearest rows (squared L2) with a
    different label. A pair that is mutually nearest appears once from each side."""
    first, second = [], []
    for start in range(0, len(encodings), block):
        distances = squared_distances(encodings[start : start + block], encodings)
        distances[labels[start : start + block, None] == labels[None, :]] = np.inf
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :per_image]
        first.append(np.repeat(np.arange(start, start + len(nearest)), per_image))
        second.append(nearest.ravel())
    return np.concatenate(first), np.concatenate(second)


def fit_head(
    kind: str,
    first: np.ndarray,
    second: np.ndarray,
    same: np.ndarray,
    l2: float = 1e-5,
    iterations: int = 30,
) -> BinaryHead:
    """Logistic regression of ``same`` on phi(first, second) by Newton's method (IRLS)."""
    features = pair_features(kind, first.astype(np.float64), second.astype(np.float64))
    x = np.hstack([features, np.ones((len(features), 1))])
    y = same.astype(np.float64)
    w = np.zeros(x.shape[1])
    penalty = l2 * len(y) * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = sigmoid(x @ w)
        gradient = x.T @ (p - y) + penalty @ w
        hessian = (x.T * (p * (1 - p))) @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return BinaryHead(kind, w[:-1].copy(), float(w[-1]))


def save_head(path: Path, head: BinaryHead, calibration: Calibration, info: dict) -> None:
    """Weights, bias and the head's calibration (threshold on 1 - p, Platt fit, impostor quantiles)."""
    save_weights(
        path,
        kind_name(head.kind),
        {"weights": head.weights.astype(np.float64), "bias": np.array([head.bias])},
        {
            "calibration": {
                "threshold": calibration.threshold,
                "slope": calibration.slope,
                "intercept": calibration.intercept,
                "model": calibration.model,
                "source": calibration.source,
                "train_accuracy": calibration.train_accuracy,
                "impostor_quantiles": [list(q) for q in calibration.impostor_quantiles],
            },
            **info,
        },
    )
