"""Verification metrics on LFW View 1: ROC, AUC, accuracy at a train-chosen threshold, TAR at FAR.

Every model is reduced to a *distance* per pair (lower = more likely the same person): the
squared L2 distance for encoders, 1 - P(same) for binary heads. Pairs where a face was not found
get distance +inf (always "different"), the convention of bench/lfw.py, so models that share a
detector are compared on the same 1,000 DevTest pairs.

The threshold is chosen on training pairs (DevTrain) only, then applied to DevTest. TAR at
FAR = 1e-3 is read from the DevTest ROC: the largest true-accept rate whose false-accept rate is
at most 1e-3. DevTest has 500 impostor pairs, so the smallest non-zero FAR it can measure is
0.002: TAR@FAR=1e-3 there is the TAR with no impostor accepted.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from training.calibration import best_threshold


@dataclass(frozen=True)
class Roc:
    false_accept: np.ndarray
    true_accept: np.ndarray
    thresholds: np.ndarray


def roc_curve(distances: np.ndarray, same: np.ndarray) -> Roc:
    """(FAR, TAR) at every distinct threshold, accepting pairs with distance <= threshold."""
    distances = np.asarray(distances, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(distances, kind="stable")
    d, y = distances[order], same[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(d) != 0), len(d) - 1]
    finite = np.isfinite(d[last_of_run])
    last_of_run = last_of_run[finite]
    tar = np.r_[0.0, np.cumsum(y)[last_of_run] / max(1, y.sum())]
    far = np.r_[0.0, np.cumsum(~y)[last_of_run] / max(1, (~y).sum())]
    return Roc(far, tar, np.r_[-np.inf, d[last_of_run]])


def auc(roc: Roc) -> float:
    """Area under the ROC (trapezoids; pairs never accepted leave the curve short of (1, 1))."""
    far = np.r_[roc.false_accept, 1.0]
    tar = np.r_[roc.true_accept, roc.true_accept[-1]]
    return float(np.trapezoid(tar, far))


def tar_at_far(roc: Roc, far: float = 1e-3) -> float:
    allowed = roc.false_accept <= far + 1e-12
    return float(roc.true_accept[allowed].max())


@dataclass(frozen=True)
class Report:
    model: str
    threshold: float
    """Chosen on the training pairs (distance <= threshold: same)."""
    train_accuracy: float
    test_accuracy: float
    auc: float
    tar_at_far_1e3: float
    test_pairs: int
    test_missing: int
    """DevTest pairs with a face missing (counted as 'different')."""

    def as_dict(self) -> dict:
        return asdict(self)


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(distances) <= threshold) == np.asarray(same, bool)))


def evaluate(
    model: str,
    train_distances: np.ndarray,
    train_same: np.ndarray,
    test_distances: np.ndarray,
    test_same: np.ndarray,
) -> tuple[Report, Roc]:
    """The threshold from the training pairs (finite ones), every figure on the test pairs."""
    finite = np.isfinite(train_distances)
    threshold, train_acc = best_threshold(train_distances[finite], train_same[finite])
    roc = roc_curve(test_distances, test_same)
    report = Report(
        model=model,
        threshold=threshold,
        train_accuracy=train_acc,
        test_accuracy=accuracy(test_distances, test_same, threshold),
        auc=auc(roc),
        tar_at_far_1e3=tar_at_far(roc, 1e-3),
        test_pairs=len(test_distances),
        test_missing=int(np.sum(~np.isfinite(test_distances))),
    )
    return report, roc


def plot_rocs(curves: dict[str, Roc], path: Path, title: str) -> None:
    """All ROC curves in one PNG, FAR on a log axis (the low-FAR end is what matters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for name, roc in curves.items():
        axes.plot(np.maximum(roc.false_accept, 1e-3), roc.true_accept, label=name)
    axes.set_xscale("log")
    axes.set_xlim(1e-3, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false accept rate (log; FAR below 0.002 drawn at 1e-3)")
    axes.set_ylabel("true accept rate")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_curves(runs: dict[str, list[dict]], path: Path) -> None:
    """Training curves of several runs side by side: the common batch-all loss, the loss each
    selector minimised, and DevTest accuracy (threshold from DevTrain), per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (
        ("batch_all_loss", "mean L over every valid triplet of the batch"),
        ("loss", "mean L over the selected triplets (minimised)"),
        ("devtest_accuracy", "DevTest accuracy (threshold from DevTrain)"),
    )
    groups = sorted({re.sub(r"-seed\d+$", "", name) for name in runs})
    for axis, (key, title) in zip(axes, panels, strict=True):
        seen: dict[str, int] = {}
        for name, records in runs.items():
            group = re.sub(r"-seed\d+$", "", name)  # one colour per selector, one dash per seed
            dash = ("-", "--", ":")[seen.setdefault(group, 0) % 3]
            seen[group] += 1
            epochs = [r["epoch"] for r in records if np.isfinite(r[key])]
            values = [r[key] for r in records if np.isfinite(r[key])]
            cpu = records[-1]["cpu_seconds"]
            axis.plot(
                epochs,
                values,
                dash,
                marker=".",
                color=f"C{groups.index(group)}",
                label=f"{name} ({cpu:.0f} CPU s)",
            )
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch (75 batches of 16 identities x 4 images)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
