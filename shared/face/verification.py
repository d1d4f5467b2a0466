"""Verification (1:1): the learned similarity d(x1, x2) = ||f(x1) - f(x2)||^2 against a threshold.

The threshold tau and the confidence curve are calibrated on labelled pairs (LFW View 1 DevTrain,
``bench/lfw.py --calibrate``) and stored in ``calibration.json`` beside this module, with the
data and command that produced them. Confidence is a logistic fit P(same | d), so callers get a
probability instead of a raw distance they would have to interpret.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Calibration:
    threshold: float
    """tau on the squared L2 distance: same person when d <= tau."""
    slope: float
    intercept: float
    """P(same | d) = 1 / (1 + exp(-(intercept + slope * d))); slope is negative."""
    model: str
    source: str
    """The pairs and command the figures came from."""
    train_accuracy: float

    def confidence(self, distance: np.ndarray | float) -> np.ndarray | float:
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * np.asarray(distance))))

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class Verdict:
    distance: float
    threshold: float
    same: bool
    confidence: float
    """Calibrated probability that both faces are the same person."""


def squared_distances(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """All pairwise ||q - r||^2, (M, N), via |q|^2 + |r|^2 - 2 q.r (one matrix product)."""
    queries = np.atleast_2d(queries).astype(np.float32, copy=False)
    references = np.atleast_2d(references).astype(np.float32, copy=False)
    q2 = np.einsum("ij,ij->i", queries, queries)[:, None]
    r2 = np.einsum("ij,ij->i", references, references)[None, :]
    return np.maximum(q2 + r2 - 2.0 * queries @ references.T, 0.0)


def verify(first: np.ndarray, second: np.ndarray, calibration: Calibration) -> Verdict:
    distance = float(squared_distances(first, second)[0, 0])
    return Verdict(
        distance=distance,
        threshold=calibration.threshold,
        same=distance <= calibration.threshold,
        confidence=float(calibration.confidence(distance)),
    )


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy on labelled pairs, and that accuracy.

    Candidates are midpoints between consecutive sorted distances, the standard LFW protocol's
    way of choosing tau on the training fold only.
    """
    order = np.argsort(distances)
    d, y = distances[order], same[order].astype(bool)
    # Accuracy when the threshold sits just after position i: sames at or before i are right,
    # differents after i are right.
    correct = np.cumsum(y) + (np.sum(~y) - np.cumsum(~y))
    best = int(np.argmax(correct))
    upper = d[best + 1] if best + 1 < len(d) else d[best] + 1e-3
    return float((d[best] + upper) / 2), float(correct[best] / len(d))


def fit_logistic(
    distances: np.ndarray, same: np.ndarray, iterations: int = 50
) -> tuple[float, float]:
    """(slope, intercept) of P(same | d) by Newton's method on the log-likelihood (Platt scaling).

    Platt's smoothed targets (not 0/1) keep the fit finite when the pairs are separable.
    """
    x = np.stack([np.ones_like(distances), distances], axis=1).astype(np.float64)
    positives, negatives = int(np.sum(same)), int(np.sum(~same.astype(bool)))
    y = np.where(same.astype(bool), (positives + 1) / (positives + 2), 1 / (negatives + 2))
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        gradient = x.T @ (y - p)
        hessian = -(x.T * (p * (1 - p))) @ x - 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[1]), float(w[0])


def calibrate(distances: np.ndarray, same: np.ndarray, model: str, source: str) -> Calibration:
    threshold, accuracy = best_threshold(distances, same)
    slope, intercept = fit_logistic(distances, same)
    return Calibration(threshold, slope, intercept, model, source, accuracy)
