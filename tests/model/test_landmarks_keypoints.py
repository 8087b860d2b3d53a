"""Keypoint regression metric (no intercept, centred pixel coordinates, accuracy within a threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from vidpred.errors import VidpredError
from vidpred.metrics import keypoints as kp


def test_regression_recovers_a_linear_map_without_intercept():
    rng = np.random.default_rng(0)
    lm = rng.uniform(-30, 30, size=(200, 4, 2))
    w = rng.normal(size=(8, 6))
    truth = (lm.reshape(200, -1) @ w).reshape(200, 3, 2)
    fitted = kp.fit_regressor(lm, truth)
    assert np.allclose(fitted, w, atol=1e-8)
    assert np.allclose(kp.predict(fitted, lm), truth, atol=1e-8)


def test_accuracy_counts_points_within_threshold():
    truth = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [6.0, 0.1]], [[0.0, 6.0], [10.0, 0.0]]])  # errors 5, 6.0008, 6, 10
    assert kp.accuracy(pred, truth, 6.0) == pytest.approx(0.5)
    assert kp.accuracy(pred, truth, 10.0) == pytest.approx(1.0)


def test_evaluate_keypoints_landmarks_on_objects_are_perfect_and_random_ones_fail():
    # landmarks that sit on the objects (in some order, plus a noise landmark) → ~100 %;
    # landmarks unrelated to the objects → far below
    rng = np.random.default_rng(1)
    n, size = 300, 64
    centres = rng.uniform(5, 59, size=(n, 2, 2))
    good = np.concatenate([centres[:, ::-1], rng.uniform(0, 63, size=(n, 1, 2))], axis=1)
    res = kp.evaluate_keypoints(good[:200], centres[:200], good[200:], centres[200:], size, size, 6.0)
    assert res.accuracy == pytest.approx(1.0) and res.mean_error_px < 1e-6
    bad = rng.uniform(0, 63, size=(n, 3, 2))
    res_bad = kp.evaluate_keypoints(bad[:200], centres[:200], bad[200:], centres[200:], size, size, 6.0)
    assert res_bad.accuracy < 0.3
    assert "within 6 px" in res.describe()


def test_no_intercept_means_centering_matters():
    # a constant offset is learnable only because coordinates are centred on the image (appendix B)
    lm = np.full((10, 1, 2), 31.5)  # landmark always at the centre → centred input is 0
    truth = np.full((10, 1, 2), 40.0)
    res = kp.evaluate_keypoints(lm, truth, lm, truth, 64, 64, 6.0)
    assert res.mean_error_px == pytest.approx(np.hypot(8.5, 8.5))


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(VidpredError, match="NaN"):
        kp.fit_regressor(np.full((3, 2, 2), np.nan), np.zeros((3, 1, 2)))
    with pytest.raises(VidpredError, match="shape"):
        kp.fit_regressor(np.zeros((3, 4)), np.zeros((3, 1, 2)))
    with pytest.raises(VidpredError, match="differ"):
        kp.fit_regressor(np.zeros((3, 2, 2)), np.zeros((4, 1, 2)))
