"""Siamese binary-classification heads on frozen encodings (DeepFace-style verification).

    y_hat = sigmoid(sum_k w_k phi_k(f_i, f_j) + b)

with phi either the absolute difference |f_i,k - f_j,k| (``l1``) or the chi-square term
(f_i,k - f_j,k)^2 / (f_i,k + f_j,k) (``chi2``). The chi-square similarity was made for
non-negative features (DeepFace's are post-ReLU); dlib's encodings are signed, so the literal
denominator can vanish or change sign and blow a term up. The project uses
(f_i - f_j)^2 / (|f_i| + |f_j| + eps), which equals the definition wherever the features are
non-negative and stays bounded (by |f_i - f_j|) everywhere else.

The encoder stays frozen: gallery encodings are computed once at enrollment (the deployment
trick) and a probe costs one encoding plus a cheap head per enrolled encoding. The head is a
logistic regression on phi, fitted by Newton's method (129 parameters; exact and deterministic)
with a small L2 penalty, on same/different pairs of the training identities (no DevTest person;
no DevTrain image, so the DevTrain threshold is set on faces the head has not seen). Random
different-person pairs are mostly easy (far apart in any metric); the boundary is drawn by
the close ones, so the negatives are random pairs plus every image's nearest images of other
people (``hard_negative_pairs``), the pair-level counterpart of triplet mining.

A head's *distance* for the rest of the system is 1 - P(same): lower means more alike, as for
the squared L2 distance, so thresholds, 1:K tightening and responses work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.face.verification import Calibration
from shared.similarity.weights import WEIGHTS_DIR, WeightsFileError, load_weights

KINDS = ("l1", "chi2")
EPSILON = 1e-6


def head_file(kind: str) -> Path:
    """The committed weights of a head kind."""
    return WEIGHTS_DIR / f"head_{kind}.npz"


def pair_features(kind: str, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """phi for rows (or broadcastable arrays) of encodings; last axis is the encoding."""
    difference = first - second
    if kind == "l1":
        return np.abs(difference)
    if kind == "chi2":
        return np.square(difference) / (np.abs(first) + np.abs(second) + EPSILON)
    raise ValueError(f"unknown head kind {kind!r}: one of {', '.join(KINDS)}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


@dataclass(frozen=True)
class BinaryHead:
    kind: str
    weights: np.ndarray
    """(128,) w_k."""
    bias: float

    def probability(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """P(same person) for paired rows (broadcasting)."""
        features = pair_features(self.kind, first.astype(np.float64), second.astype(np.float64))
        return sigmoid(features @ self.weights + self.bias)

    def distances(
        self, queries: np.ndarray, references: np.ndarray, block: int = 4096
    ) -> np.ndarray:
        """(M, N) 1 - P(same) for all query x reference pairs, in blocks of references."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        references = np.atleast_2d(np.asarray(references, np.float32))
        out = np.empty((len(queries), len(references)))
        for start in range(0, len(references), block):
            part = references[None, start : start + block]
            out[:, start : start + block] = 1.0 - self.probability(queries[:, None], part)
        return out


class HeadVerifier:
    """A binary head as the system's verifier: distance 1 - P(same), its own calibration."""

    def __init__(self, head: BinaryHead, calibration: Calibration) -> None:
        self.head = head
        self.calibration = calibration
        self.name = f"head-{head.kind}"
        self.threshold = calibration.threshold

    def distances(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        return self.head.distances(queries, references)

    def confidence(self, distance: np.ndarray | float) -> np.ndarray | float:
        return self.calibration.confidence(distance)

    def identification_threshold(self, gallery_size: int, false_accept_rate: float) -> float:
        return self.calibration.identification_threshold(gallery_size, false_accept_rate)


def kind_name(kind: str) -> str:
    return f"binary-head-{kind}"


def load_head(kind: str, path: Path | None = None) -> HeadVerifier:
    """The head verifier from its weights file; WeightsFileError (clear message) if it is wrong."""
    path = path or head_file(kind)
    arrays, meta = load_weights(
        path, kind_name(kind), f"facestream similarity train-head --kind {kind}"
    )
    weights = arrays.get("weights")
    if weights is None or weights.shape != (128,) or "bias" not in arrays:
        raise WeightsFileError(f"{path}: expected 128 head weights and a bias")
    try:
        data = dict(meta["calibration"])
        data["impostor_quantiles"] = [tuple(q) for q in data["impostor_quantiles"]]
        calibration = Calibration(**data)
    except (KeyError, TypeError) as error:
        raise WeightsFileError(f"{path}: no usable calibration in the file ({error})") from error
    return HeadVerifier(
        BinaryHead(kind, weights, float(arrays["bias"].reshape(-1)[0])), calibration
    )
