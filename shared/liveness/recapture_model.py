"""The recapture model: a window's recapture cues and the motion model's verdict -> P(live).

Per window of a track (the motion model's 16 frames): the mean and the spread over the window
of each recapture cue (``recapture.CUES``, computed by the detector per face), and the motion
model's calibrated log-odds, standardised, then one logistic regression (L2). A linear model on
a few dozen ratios was chosen over a network because the data are a dozen recordings: what it can
learn is which cues move together with recapture, not the training cameras' look (measured
leave-one-source-out, docs/liveness.md).

P(live) = sigmoid(a * logit + b) with (a, b) fitted on out-of-fold windows (each window scored
by a model that never saw its source), so P = 0.5 is the operating point chosen on those.

**Moire, one-sided** (optional, ``moire_ceiling``): a screen's grid beating with the camera's
shows as a sharp spectral peak (``recapture.moire_peak``); a live face never does, but most
screens filmed from further away do not either, so a *low* value says nothing. A learned weight
would read it both ways (and five real recaptures are too few to learn it), so it is a rule set
from live windows alone: above the highest window mean of every live training source plus
``MOIRE_MARGIN``, each unit lowers the log-odds by ``MOIRE_SLOPE``; below, nothing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from shared.liveness import LivenessModelError
from shared.liveness.recapture import CUES
from shared.model_cache import npz_bytes, sha256_file, write_atomically

RECAPTURE_WEIGHTS = Path(__file__).parent / "weights" / "liveness_recapture.npz"
MOTION_CLIP = 10.0
"""The motion model's log-odds are clipped to this: one sure window must not swamp the cues."""
MOIRE_COLUMN = CUES.index("moire")
"""The window mean of ``moire`` in ``window_features``."""
MOIRE_MARGIN = 0.15
"""Above the live windows' highest moire mean (peak units: log power over its neighbours), so a
live camera a little sharper than those trained on is not taken for a screen."""
MOIRE_SLOPE = 20.0
"""Log-odds per unit above the ceiling: 0.25 above it outweighs any other evidence (5)."""


def window_features(cues: np.ndarray, motion_log_odds: np.ndarray) -> np.ndarray:
    """(B, WINDOW, len(CUES)) cues and (B,) motion log-odds -> (B, 2 * len(CUES) + 1)."""
    cues = np.asarray(cues, np.float64)
    motion = np.clip(np.asarray(motion_log_odds, np.float64), -MOTION_CLIP, MOTION_CLIP)
    return np.concatenate([cues.mean(axis=1), cues.std(axis=1), motion[:, None]], axis=1)


def fit_weighted_logistic(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float, iterations: int = 30
) -> np.ndarray:
    """(features + 1,) weights (bias last) of an L2 logistic regression by Newton's method."""
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    w = np.zeros(design.shape[1])
    weight = weight / weight.mean()
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        gradient = design.T @ (weight * (y - p)) - penalty @ w
        hessian = -(design.T * (weight * p * (1 - p))) @ design - penalty - 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


class RecaptureModel:
    """Standardisation, logistic weights and calibration: window features -> P(live)."""

    def __init__(
        self,
        mean,
        scale,
        weights,
        card: dict,
        calibration=(1.0, 0.0),
        moire_ceiling: float | None = None,
    ):
        self.mean = np.asarray(mean, np.float64)
        self.scale = np.asarray(scale, np.float64)
        self.weights = np.asarray(weights, np.float64)
        self.card = card
        self.calibration = calibration
        self.moire_ceiling = moire_ceiling

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        live: np.ndarray,
        weight: np.ndarray,
        l2: float,
        card: dict,
        moire: bool = False,
    ):
        """On full window features: the logistic on the card's ``columns`` (all if None) and,
        with ``moire``, the ceiling from the live windows."""
        columns = card.get("columns")
        x = features if columns is None else features[:, columns]
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        w = fit_weighted_logistic((x - mean) / scale, live.astype(float), weight, l2)
        ceiling = float(features[live, MOIRE_COLUMN].max()) + MOIRE_MARGIN if moire else None
        return cls(mean, scale, w, card, moire_ceiling=ceiling)

    def linear_logits(self, features: np.ndarray) -> np.ndarray:
        """(B, 2 * len(CUES) + 1) window features -> (B,) the logistic's log-odds, on the card's
        ``columns`` (a model fitted on a subset of the features) or on all of them."""
        features = np.asarray(features, np.float64)
        if self.card.get("columns") is not None and features.shape[1] != len(self.mean):
            features = features[:, self.card["columns"]]
        z = (features - self.mean) / self.scale
        return z @ self.weights[:-1] + self.weights[-1]

    def moire_penalty(self, features: np.ndarray) -> np.ndarray:
        """(B,) log-odds the moire rule takes away: 0 at or below the ceiling, or without it."""
        features = np.asarray(features, np.float64)
        if self.moire_ceiling is None:
            return np.zeros(len(features))
        if features.shape[1] != 2 * len(CUES) + 1:
            raise ValueError("the moire rule reads full window features")
        return MOIRE_SLOPE * np.maximum(0.0, features[:, MOIRE_COLUMN] - self.moire_ceiling)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The window's score before calibration: the logistic less the moire rule's share."""
        return self.linear_logits(features) - self.moire_penalty(features)

    def probability_live(self, features: np.ndarray) -> np.ndarray:
        """The calibration scales the logistic only; the rule's log-odds are absolute."""
        a, b = self.calibration
        log_odds = a * self.linear_logits(features) + b - self.moire_penalty(features)
        return 1.0 / (1.0 + np.exp(-log_odds))

    def save(self, path: Path = RECAPTURE_WEIGHTS) -> None:
        arrays = {
            "standardise/mean": self.mean,
            "standardise/scale": self.scale,
            "logistic/weights": self.weights,
            "calibration/ab": np.array(self.calibration, np.float64),
        }
        if self.moire_ceiling is not None:
            arrays["moire/ceiling"] = np.array(self.moire_ceiling, np.float64)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, npz_bytes(arrays))
        card = {**self.card, "cues": list(CUES), "sha256": sha256_file(path)}
        if self.moire_ceiling is not None:
            card["moire"] = {
                "ceiling": self.moire_ceiling,
                "margin": MOIRE_MARGIN,
                "slope": MOIRE_SLOPE,
            }
        write_atomically(path.with_suffix(".json"), json.dumps(card, indent=2).encode() + b"\n")


def load_recapture_model(path: Path = RECAPTURE_WEIGHTS) -> RecaptureModel:
    """The committed recapture model; LivenessModelError if missing, damaged or for other cues."""
    card_path = path.with_suffix(".json")
    if not path.exists() or not card_path.exists():
        raise LivenessModelError(f"no recapture liveness model at {path}")
    card = json.loads(card_path.read_text())
    if sha256_file(path) != card.get("sha256"):
        raise LivenessModelError(f"{path} does not match the sha256 in {card_path.name}")
    if card.get("cues") != list(CUES):
        raise LivenessModelError(f"{path} was trained on other cues: {card.get('cues')}")
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as archive:
        stored = {key: archive[key] for key in archive.files}
    a, b = stored["calibration/ab"]
    return RecaptureModel(
        stored["standardise/mean"],
        stored["standardise/scale"],
        stored["logistic/weights"],
        card,
        (float(a), float(b)),
        float(stored["moire/ceiling"].item()) if "moire/ceiling" in stored else None,
    )


class RecaptureLiveness:
    """What the liveness service runs: the motion model and the recapture model together.

    ``probability_live(motion, cues)`` takes a batch of windows of motion features and of
    recapture cues (the detector's ``recapture`` per face) of the same frames."""

    needs_cues = True

    def __init__(self, motion_model, recapture: RecaptureModel):
        self.motion_model = motion_model
        self.recapture = recapture
        self.window = motion_model.window
        self.card = {**recapture.card, "motion_sha256": motion_model.card.get("sha256")}

    def probability_live(self, motion: np.ndarray, cues: np.ndarray) -> np.ndarray:
        a, b = self.motion_model.calibration
        log_odds = a * self.motion_model.logits(motion) + b
        return self.recapture.probability_live(window_features(cues, log_odds))


def load_recapture_liveness(path: Path = RECAPTURE_WEIGHTS) -> RecaptureLiveness:
    """The recapture model at ``path`` with the motion model its card names (the default one)."""
    from shared.liveness.model import load_model

    recapture = load_recapture_model(path)
    motion = load_model()
    if recapture.card.get("motion_sha256") not in (None, motion.card.get("sha256")):
        raise LivenessModelError(f"{path} was fitted on another motion model's verdicts")
    return RecaptureLiveness(motion, recapture)
