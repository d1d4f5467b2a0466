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
from typing import Any, Protocol

import numpy as np

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def calibration_path(jitters: int = 0, encoder: str = "dlib-resnet") -> Path:
    """Where the calibration of ``encoder``'s (setting face.encoder) single encodings (0) or of
    ``jitters``-jittered ones lives. Each encoder has its own distances, so its own file."""
    if encoder == "sface":
        if jitters > 0:
            raise ValueError("jittered encodings are calibrated for dlib-resnet only")
        return CALIBRATION_FILE.with_name("calibration_sface.json")
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
    impostor_tail: dict[str, Any] | None = None
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
