"""Each encoder's calibration on LFW (``shared/face/calibration*.json``): ``facestream calibrate``.

tau and the Platt curve on View 1 DevTrain pairs; the impostor quantiles and the generalized
Pareto tail (the 1:K thresholds) on pairs of different people among the LFW images outside
DevTest, so DevTest stays unseen for ``bench/lfw.py``'s report. Encodings come from the LFW cache
(``training/datasets/lfw_cache.py``, in ``bench/out/``; computed on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from shared.face.factory import ENCODER_NAMES
from shared.face.verification import Calibration, calibration_path, squared_distances
from training.calibration import IMPOSTOR_RATES, TAIL_RATE, calibrate, fit_impostor_tail
from training.datasets.lfw import Pair, identities, people_in, read_pairs
from training.datasets.lfw_cache import CachedLfw, outside_devtest_keys


def pair_distances(
    pairs: list[Pair], embed: Callable[[Path], np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Squared distances (inf where a face was missed), labels, and the number of misses."""
    distances, misses = [], 0
    for pair in pairs:
        a, b = embed(pair.first), embed(pair.second)
        if a is None or b is None:
            misses += 1
            distances.append(np.inf)
        else:
            distances.append(float(squared_distances(a, b)[0, 0]))
    return np.array(distances), np.array([p.same for p in pairs]), misses


def split_images(data: Path) -> tuple[list[Path], set[str]]:
    """LFW's images outside View 1 DevTest (its people and its images), and DevTest's people.

    The calibration's impostor pairs come from these only, so DevTest stays unseen.
    """
    test = read_pairs(data, "DevTest")
    test_people = people_in(test)
    test_images = {p.first for p in test} | {p.second for p in test}
    outside = [
        img
        for name, images in identities(data).items()
        if name not in test_people
        for img in images
        if img not in test_images
    ]
    return outside, test_people


def impostor_tail_sample(
    vectors: np.ndarray,
    names: np.ndarray,
    keep: float = 0.01,
    draws: int = 5,
    sample: int = 2_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Pairs of different people, each pair of PEOPLE weighted equally: in each of ``draws``
    rounds one image per person is drawn and every pair of those images is taken. Returns the
    lowest ``keep`` fraction of their squared distances (sorted), the number of pairs, and a
    random sample of them (sorted).

    Why per person: a stranger meets each enrolled person once, so the 1:K threshold needs the
    distance law of (one image of A, one image of B) over random people A != B. Every *image*
    pair would weight a pair of people by the product of their image counts: in LFW, George W.
    Bush (530 images) and his brother Jeb make 391 of the 516 image pairs of different people
    closer than SFace's 1e-5 distance, so one look-alike pair of brothers set the threshold
    (2026-12-02; see docs/models.md). Tens of millions of pairs do not fit in memory as a list,
    and only the lower tail matters: a random sample gives the cut-off, one pass keeps what is
    below.
    """
    rng = np.random.default_rng(seed)
    people = {name: np.flatnonzero(names == name) for name in np.unique(names)}
    rounds = [np.array([rng.choice(rows) for rows in people.values()]) for _ in range(draws)]
    samples = []
    for chosen in rounds:
        a = rng.integers(0, len(chosen), sample // draws)
        b = rng.integers(0, len(chosen), sample // draws)
        ok = a != b
        diff = vectors[chosen[a[ok]]] - vectors[chosen[b[ok]]]
        samples.append(np.einsum("ij,ij->i", diff, diff))
    sampled = np.sort(np.concatenate(samples))
    cut = float(np.quantile(sampled, keep * 1.5))
    kept, total = [], 0
    for chosen in rounds:
        chosen_vectors = vectors[chosen]
        n = len(chosen)
        for start in range(0, n, 1024):
            block = squared_distances(chosen_vectors[start : start + 1024], chosen_vectors)
            upper = np.arange(start, start + len(block))[:, None] < np.arange(n)[None, :]
            total += int(upper.sum())
            kept.append(block[upper & (block <= cut)])
    return np.sort(np.concatenate(kept)), total, sampled


def quantiles_from(
    lowest: np.ndarray, total: int, sampled: np.ndarray
) -> list[tuple[float, float]]:
    """(rate, distance) points: exact order statistics in the kept tail, the sample above it."""
    points = []
    for rate in IMPOSTOR_RATES:
        rank = int(rate * total)
        if rank < 10:
            continue
        points.append(
            (rate, float(lowest[rank]) if rank < len(lowest) else float(np.quantile(sampled, rate)))
        )
    return points


def calibrate_encoder(
    cache: CachedLfw,
    data: Path,
    encoder: str,
    command: str,
    exclude: frozenset[str] | set[str] = frozenset(),
    tail_rate: float = TAIL_RATE,
) -> Calibration:
    """tau and Platt on DevTrain pairs; impostor quantiles and tail (anchored at the per-pair
    rate ``tail_rate``) on every pair of different people among the LFW images outside DevTest
    (and outside ``exclude``'d people)."""
    train = read_pairs(data, "DevTrain")
    d_train, y_train, miss_train = pair_distances(train, cache)
    finite = np.isfinite(d_train)
    outside, _ = split_images(data)
    found = [(img.parent.name, cache(img)) for img in outside if img.parent.name not in exclude]
    names = np.array([n for n, v in found if v is not None])
    vectors = np.stack([v for _, v in found if v is not None]).astype(np.float32)
    lowest, total, sampled = impostor_tail_sample(vectors, names)
    tail = fit_impostor_tail(lowest, total, tail_rate)
    fitted = calibrate(
        d_train[finite],
        y_train[finite],
        model=ENCODER_NAMES[encoder],
        source=f"LFW View 1 DevTrain, {finite.sum()} pairs with both faces found ({miss_train} missed) "
        f"by {cache.name}; impostors: {total:,} pairs of different people (5 draws of one image "
        f"per person, each pair of people weighted equally) among the {len(vectors):,} LFW images "
        f"of {len(set(names))} people outside DevTest's people and images; {command}",
    )
    return replace(
        fitted,
        impostor_quantiles=quantiles_from(lowest, total, sampled),
        impostor_tail=asdict(tail),
    )


def calibrate_encoders(
    data: Path, detector: str, encoders: list[str], write: bool, devtest: bool = False
) -> list[tuple[CachedLfw, Calibration]]:
    """Fit each encoder's calibration (and write it to its ``calibration_path`` with ``write``).
    The fit never reads View 1 DevTest; ``devtest``: encode its images too, for a report."""
    fitted_all = []
    only = None if devtest else outside_devtest_keys(data)
    for encoder in encoders:
        cache = CachedLfw(data, detector, encoder, only=only)
        command = f"facestream calibrate --detector {detector} --encoders {encoder}"
        fitted = calibrate_encoder(cache, data, encoder, command)
        tail = fitted.impostor_tail or {}
        print(
            f"\n{fitted.model} ({cache.name}): DevTrain tau {fitted.threshold:.4f} "
            f"(accuracy {fitted.train_accuracy:.4f}); impostor tail from {tail.get('pairs', 0):,} "
            f"pairs: anchor {tail.get('anchor', 0):.4f} at rate {tail.get('rate', 0):.0e}, "
            f"shape {tail.get('shape', 0):.3f}, scale {tail.get('scale', 0):.4f}"
        )
        if write:
            fitted.save(calibration_path(0, encoder))
            print(f"wrote {calibration_path(0, encoder)}")
        fitted_all.append((cache, fitted))
    return fitted_all
