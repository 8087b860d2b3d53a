"""Percentile bootstrap intervals over clips: determinism, shapes, and coverage sanity."""

from __future__ import annotations

import numpy as np
import pytest

from vidpred.errors import VidpredError
from vidpred.metrics import bootstrap_ci


def test_same_seed_same_interval_other_seed_other_interval():
    v = np.random.default_rng(0).normal(size=60)
    a, b = bootstrap_ci(v, seed=3), bootstrap_ci(v, seed=3)
    assert a == b
    assert bootstrap_ci(v, seed=4) != a
    lo, hi = a
    assert isinstance(lo, float) and lo < v.mean() < hi


def test_single_value_and_constant_values():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci(np.full(10, 2.5)) == pytest.approx((2.5, 2.5))
    lo, hi = bootstrap_ci(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(lo, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(hi, [1.0, 2.0, 3.0])


def test_two_dimensional_values_give_per_column_intervals_from_the_same_resampled_clips():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(30, 5)) + np.arange(5)  # clips × frames, column means 0..4
    lo, hi = bootstrap_ci(v, seed=7)
    assert lo.shape == (5,) and hi.shape == (5,)
    assert (lo < v.mean(0)).all() and (v.mean(0) < hi).all()
    for j in range(5):  # each column = the 1-D interval of that column (same clip resampling)
        assert bootstrap_ci(v[:, j], seed=7) == pytest.approx((lo[j], hi[j]), rel=1e-12)


def test_coverage_and_width_are_sane():
    rng = np.random.default_rng(2)
    n, trials = 40, 300
    data = rng.normal(loc=1.0, scale=2.0, size=(trials, n))
    hits, widths = 0, []
    for i, row in enumerate(data):
        lo, hi = bootstrap_ci(row, n_boot=500, seed=i)
        hits += lo <= 1.0 <= hi
        widths.append(hi - lo)
    assert 0.88 <= hits / trials <= 0.99  # nominal 95 % (percentile bootstrap is a bit narrow at n = 40)
    normal_width = 2 * 1.96 * 2.0 / np.sqrt(n)
    assert np.mean(widths) == pytest.approx(normal_width, rel=0.15)
    # more clips → narrower; lower level → narrower
    big = rng.normal(loc=1.0, scale=2.0, size=400)
    assert np.diff(bootstrap_ci(big)) < 0.5 * np.mean(widths)
    assert np.diff(bootstrap_ci(data[0], level=0.5)) < np.diff(bootstrap_ci(data[0], level=0.95))


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(VidpredError, match="0 clips"):
        bootstrap_ci([])
    with pytest.raises(VidpredError, match="NaN"):
        bootstrap_ci([1.0, np.nan, 2.0])
    with pytest.raises(VidpredError, match="1-D"):
        bootstrap_ci(np.zeros((2, 2, 2)))
    with pytest.raises(VidpredError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)
    with pytest.raises(VidpredError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
