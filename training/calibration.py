"""Fitting a verifier's calibration on labelled pairs: threshold, confidence curve, impostor tail.

What ``shared.face.verification.Calibration`` holds and the runtime reads; this is how it is made
(``facestream calibrate``, ``bench/lfw.py``, the similarity heads, the liveness models' Platt fit).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from shared.face.verification import Calibration, ImpostorTail

TAIL_RATE = 1e-3
"""Where the fitted tail starts: low enough for the Pareto limit, with ~6e4 excesses on LFW."""


def fit_impostor_tail(
    lowest: np.ndarray, total_pairs: int, rate: float = TAIL_RATE
) -> ImpostorTail:
    """Fit the generalized Pareto tail to the lowest ``rate`` of ``total_pairs`` impostor
    distances (``lowest``: at least that many of the smallest distances, any order), by maximum
    likelihood (scipy)."""
    from scipy.stats import genpareto

    lowest = np.sort(np.asarray(lowest, np.float64))
    count = int(rate * total_pairs)
    if count < 100 or len(lowest) < count:
        raise ValueError(f"need the {count} smallest of {total_pairs} distances (>= 100)")
    anchor = float(lowest[count])
    excess = anchor - lowest[:count]
    shape, _, scale = genpareto.fit(excess, floc=0.0)
    return ImpostorTail(anchor, count / total_pairs, float(shape), float(scale), int(total_pairs))


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
    distances: np.ndarray, same: np.ndarray, iterations: int = 50, balanced: bool = False
) -> tuple[float, float]:
    """(slope, intercept) of P(same | d) by Newton's method on the log-likelihood (Platt scaling).

    Platt's smoothed targets (not 0/1) keep the fit finite when the pairs are separable.
    ``balanced`` weighs both classes equally, so P = 0.5 sits where the two error rates balance
    rather than where the sample's class ratio puts it.
    """
    x = np.stack([np.ones_like(distances), distances], axis=1).astype(np.float64)
    positive = same.astype(bool)
    positives, negatives = int(np.sum(positive)), int(np.sum(~positive))
    y = np.where(positive, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    weight = (
        np.where(positive, len(y) / (2 * positives), len(y) / (2 * negatives))
        if balanced
        else np.ones(len(y))
    )
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        gradient = x.T @ (weight * (y - p))
        hessian = -(x.T * (weight * p * (1 - p))) @ x - 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[1]), float(w[0])


IMPOSTOR_RATES = tuple(float(r) for r in np.logspace(-7, -1, 25))


def impostor_quantiles(impostor_distances: np.ndarray) -> list[tuple[float, float]]:
    """(rate, distance) points: the fraction ``rate`` of impostor pairs is closer than ``distance``.

    Rates below what the sample can resolve (fewer than ~10 pairs) are left out.
    """
    distances = np.sort(impostor_distances)
    usable = [r for r in IMPOSTOR_RATES if r * len(distances) >= 10]
    return [(r, float(np.quantile(distances, r))) for r in usable]


def calibrate(
    distances: np.ndarray,
    same: np.ndarray,
    model: str,
    source: str,
    impostor_distances: np.ndarray | None = None,
    impostor_tail: ImpostorTail | None = None,
) -> Calibration:
    threshold, accuracy = best_threshold(distances, same)
    slope, intercept = fit_logistic(distances, same)
    quantiles = impostor_quantiles(impostor_distances) if impostor_distances is not None else []
    tail = asdict(impostor_tail) if impostor_tail is not None else None
    return Calibration(threshold, slope, intercept, model, source, accuracy, quantiles, tail)
