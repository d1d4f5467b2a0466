"""Verification (1:1): the learned similarity d(x1, x2) = ||f(x1) - f(x2)||^2 against a threshold.

The threshold tau and the confidence curve are calibrated on labelled pairs (LFW View 1 DevTrain,
``bench/lfw.py --calibrate``) and stored in ``calibration.json`` beside this module, with the
data and command that produced them. Confidence is a logistic fit P(same | d), so callers get a
probability instead of a raw distance they would have to interpret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def calibration_path(jitters: int = 0, encoder: str = "dlib-resnet") -> Path:
    """Where the calibration of ``encoder``'s (setting face.encoder) single encodings (0) or of
    ``jitters``-jittered ones lives. Each encoder has its own distances, so its own file."""
    if encoder in ("sface", "sface-flip"):
        if jitters > 0:
            raise ValueError("jittered encodings are calibrated for dlib-resnet only")
        return CALIBRATION_FILE.with_name(f"calibration_{encoder.replace('-', '_')}.json")
    return (
        CALIBRATION_FILE
        if jitters <= 0
        else CALIBRATION_FILE.with_name(f"calibration_jitter{jitters}.json")
    )


class Verifier(Protocol):
    """The one decision rule that verify, identify and the recognizer apply to two encodings.

    A *distance* is lower for more alike faces: the squared L2 distance (``Calibration``, the
    default) or 1 - P(same) of a binary head (shared/similarity/heads.py). Built once from
    settings in shared/face/factory.build_verifier, so the choice is made in one place.
    """

    @property
    def name(self) -> str:
        """``l2``, ``head-l1`` or ``head-chi2`` (the setting face.verifier)."""
        ...

    @property
    def threshold(self) -> float:
        """1:1: same person when distance <= threshold."""
        ...

    def distances(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        """(M, N) distances between every query and reference encoding."""
        ...

    def confidence(self, distance: np.ndarray | float) -> np.ndarray | float:
        """Calibrated P(same person) for a distance."""
        ...

    def identification_threshold(self, gallery_size: int, false_accept_rate: float) -> float:
        """The 1:K threshold for ``gallery_size`` enrolled people."""
        ...


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
    impostor_quantiles: list[tuple[float, float]] = field(default_factory=list)
    """(false-accept rate, distance) points of the impostor distance distribution: the fraction of
    pairs of different people closer than ``distance``. Drives the 1:K threshold."""
    impostor_tail: dict[str, float] | None = None
    """A generalized Pareto fit to the lower tail of the impostor distances (``ImpostorTail``):
    extrapolates the per-pair rate below what the sample resolves. None: quantiles only."""

    @property
    def name(self) -> str:
        return "l2"

    def distances(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        return squared_distances(queries, references)

    def confidence(self, distance: np.ndarray | float) -> np.ndarray | float:
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * np.asarray(distance))))

    def identification_threshold(self, gallery_size: int, false_accept_rate: float) -> float:
        """tau for 1:K search, so that a stranger is named with probability ``false_accept_rate``.

        A stranger is compared with all K enrolled people: with a per-pair false-accept rate p,
        P(some match) = 1 - (1 - p)^K, about K p. Recognition error compounds with K, so the
        per-pair rate must shrink to ``false_accept_rate / K``; the distance for it comes from the
        impostor quantiles (log-interpolated). Never looser than the 1:1 threshold.
        """
        if gallery_size <= 1 or not self.impostor_quantiles:
            return self.threshold
        per_pair = 1.0 - (1.0 - false_accept_rate) ** (1.0 / gallery_size)
        return min(self.threshold, self.impostor_distance(per_pair))

    def impostor_distance(self, rate: float) -> float:
        """The distance below which a fraction ``rate`` of impostor pairs fall.

        Within the fitted tail (rates below its anchor) from the generalized Pareto fit, which
        keeps tightening where the sample's quantiles run out; above it, or without a tail, the
        quantiles log-interpolated (clamped at the smallest one, the old floor).
        """
        if self.impostor_tail is not None and rate < self.impostor_tail["rate"]:
            return ImpostorTail(**self.impostor_tail).distance(rate)
        rates, distances = zip(*sorted(self.impostor_quantiles), strict=True)
        return float(np.interp(np.log10(rate), np.log10(rates), distances))

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        data = json.loads(path.read_text())
        data["impostor_quantiles"] = [tuple(point) for point in data.get("impostor_quantiles", [])]
        return cls(**data)


@dataclass(frozen=True)
class ImpostorTail:
    """The lower tail of the impostor distance distribution as a generalized Pareto law.

    Why: the 1:K threshold for K enrolled people needs the distance that only ``FAR / K`` of
    impostor pairs undercut; with K = 10^6 that is 1e-8 per pair, far below what any labelled
    sample resolves (LFW gives ~6e7 impostor pairs, so quantiles stop near 1e-6). Extreme-value
    theory (Pickands-Balkema-de Haan) says the excesses below a low enough anchor ``u`` follow a
    generalized Pareto distribution whatever the parent law, so the tail is fitted there and
    extrapolated: P(d < u - y) = rate * (1 + shape * y / scale) ** (-1 / shape), y >= 0.
    """

    anchor: float
    """u: the distance at which the tail starts."""
    rate: float
    """The fraction of impostor pairs closer than ``anchor``."""
    shape: float
    """xi; negative: the tail is bounded (no impostor closer than anchor + scale / shape)."""
    scale: float
    pairs: int = 0
    """Impostor pairs the fit saw (for the record)."""

    def distance(self, rate: float) -> float:
        """The distance with a fraction ``rate`` (< self.rate) of impostor pairs below it, >= 0."""
        ratio = rate / self.rate
        if abs(self.shape) < 1e-9:
            excess = -self.scale * np.log(ratio)
        else:
            excess = self.scale / self.shape * (ratio ** (-self.shape) - 1.0)
        return float(max(0.0, self.anchor - excess))

    def rate_below(self, distance: float) -> float:
        """The fitted fraction of impostor pairs closer than ``distance`` (<= anchor)."""
        excess = self.anchor - distance
        if excess <= 0:
            return self.rate
        base = 1.0 + self.shape * excess / self.scale
        if base <= 0:
            return 0.0
        return float(self.rate * base ** (-1.0 / self.shape))


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


def verify(first: np.ndarray, second: np.ndarray, verifier: Verifier) -> Verdict:
    distance = float(verifier.distances(first, second)[0, 0])
    return Verdict(
        distance=distance,
        threshold=verifier.threshold,
        same=distance <= verifier.threshold,
        confidence=float(verifier.confidence(distance)),
    )


def index_metric(verifier: Verifier) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """What GalleryIndex should rank with: None for L2 (its own fast path with cached norms)."""
    return None if isinstance(verifier, Calibration) else verifier.distances


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
