"""Distances, threshold selection and confidence calibration on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from shared.face.verification import Calibration, squared_distances, verify
from training.calibration import best_threshold, calibrate, fit_logistic


def test_squared_distances_match_the_definition() -> None:
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(3, 128)), rng.normal(size=(5, 128))
    expected = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    assert np.allclose(squared_distances(q, r), expected, rtol=1e-4, atol=1e-3)


def test_best_threshold_separates_separable_pairs() -> None:
    distances = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0])
    threshold, accuracy = best_threshold(distances, same)
    assert threshold == pytest.approx(0.4)
    assert accuracy == 1.0


def test_best_threshold_maximises_accuracy_with_overlap() -> None:
    distances = np.array([0.1, 0.2, 0.45, 0.4, 0.6, 0.9])
    same = np.array([1, 1, 1, 0, 0, 0])
    _, accuracy = best_threshold(distances, same)
    assert accuracy == pytest.approx(5 / 6)


def test_logistic_confidence_is_high_for_close_and_low_for_far_pairs() -> None:
    rng = np.random.default_rng(1)
    same_d = rng.normal(0.2, 0.1, 500)
    diff_d = rng.normal(0.6, 0.1, 500)
    d = np.concatenate([same_d, diff_d])
    y = np.concatenate([np.ones(500), np.zeros(500)])
    slope, intercept = fit_logistic(d, y)
    assert slope < 0
    p = 1 / (1 + np.exp(-(intercept + slope * np.array([0.2, 0.4, 0.6]))))
    assert p[0] > 0.95 and 0.3 < p[1] < 0.7 and p[2] < 0.05


def test_verify_reports_distance_threshold_decision_and_confidence() -> None:
    calibration = calibrate(
        np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7]), np.array([1, 1, 1, 0, 0, 0]), "m", "test"
    )
    a = np.zeros(128, np.float32)
    b = a.copy()
    b[0] = 0.5  # squared distance 0.25
    verdict = verify(a, b, calibration)
    assert verdict.distance == pytest.approx(0.25)
    assert verdict.same and verdict.threshold == pytest.approx(0.4)
    assert verdict.confidence > 0.5


def test_calibration_round_trips_through_its_file(tmp_path) -> None:
    calibration = Calibration(0.36, -20.0, 7.0, "m", "s", 0.99)
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_the_1_to_k_threshold_tightens_as_the_gallery_grows() -> None:
    rng = np.random.default_rng(2)
    impostors = rng.normal(1.0, 0.15, 1_000_000)
    calibration = calibrate(
        np.array([0.5, 0.8, 1.1, 1.2]),
        np.array([1, 1, 0, 0]),
        "m",
        "s",
        impostor_distances=impostors,
    )
    taus = [calibration.identification_threshold(k, 0.01) for k in (1, 10, 100, 10_000)]
    assert taus[0] == calibration.threshold
    assert taus[1] > taus[2] > taus[3]
    # With K = 100 the per-pair rate is ~1e-4: the 1e-4 quantile of N(1, 0.15) is 1 - 3.72 * 0.15.
    assert taus[2] == pytest.approx(1 - 3.719 * 0.15, abs=0.01)


def test_the_fitted_tail_predicts_quantiles_far_below_what_it_saw() -> None:
    """Impostor-like distances with a known law (2 - 2 cos of random unit vectors in 128-d is
    close to a normal around 2): fitted on 4 x 10^6 draws, the tail's 1e-7 distance is where the
    exact law puts it, and where the sample's own quantiles cannot reach."""
    from scipy.stats import beta

    from training.calibration import fit_impostor_tail

    rng = np.random.default_rng(0)
    # cos of two random unit vectors in d dims: (2 B - 1) with B ~ Beta((d-1)/2, (d-1)/2).
    law = beta(63.5, 63.5)
    draws = 2 - 2 * (2 * law.rvs(4_000_000, random_state=rng) - 1)
    tail = fit_impostor_tail(draws, len(draws))
    for rate in (1e-5, 1e-7):
        exact = 2 - 2 * (2 * law.isf(rate) - 1)
        assert tail.distance(rate) == pytest.approx(exact, abs=0.03)  # 0.2 sd of the law
        assert tail.rate_below(tail.distance(rate)) == pytest.approx(rate, rel=1e-6)
    assert tail.distance(1e-8) < draws.min()  # beyond the sample


def test_with_a_tail_the_1_to_k_threshold_keeps_tightening_past_the_quantiles() -> None:
    from dataclasses import asdict

    from shared.face.verification import ImpostorTail

    quantiles = [(1e-6, 0.20), (1e-4, 0.30), (1e-2, 0.50)]
    floor = Calibration(0.6, -30.0, 12.0, "m", "s", 0.99, quantiles)
    tail = ImpostorTail(anchor=0.40, rate=1e-3, shape=-0.1, scale=0.05)
    fitted = Calibration(0.6, -30.0, 12.0, "m", "s", 0.99, quantiles, asdict(tail))
    sizes = (1_000, 10_000, 100_000, 1_000_000)
    assert {floor.identification_threshold(k, 0.01) for k in sizes[2:]} == {0.2}  # the old floor
    with_tail = [fitted.identification_threshold(k, 0.01) for k in sizes]
    assert all(a > b for a, b in zip(with_tail, with_tail[1:], strict=False))
    for k, threshold in zip(sizes, with_tail, strict=True):
        per_pair = 1 - 0.99 ** (1 / k)
        assert tail.rate_below(threshold) == pytest.approx(per_pair, rel=1e-6)
