"""Bootstrap intervals against scipy's percentile bootstrap and against the normal approximation
of a rate, on samples with known answers."""

import numpy as np
import pytest
from scipy import stats

from mmlens.analyses.intervals import Interval, bootstrap_interval, difference_interval


def test_rate_interval_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    flags = (rng.random(400) < 0.3).astype(float)
    ours = bootstrap_interval(flags, n_resamples=20_000, seed=2)
    theirs = stats.bootstrap(
        (flags,), np.mean, method="percentile", n_resamples=20_000, random_state=3
    ).confidence_interval
    assert ours.estimate == pytest.approx(flags.mean())
    assert ours.low == pytest.approx(theirs.low, abs=0.01)
    assert ours.high == pytest.approx(theirs.high, abs=0.01)
    # and the textbook normal interval of a proportion
    half = 1.96 * np.sqrt(flags.mean() * (1 - flags.mean()) / flags.size)
    assert ours.low == pytest.approx(flags.mean() - half, abs=0.01)
    assert ours.n == (400,)


def test_difference_of_rates():
    rng = np.random.default_rng(4)
    hallucinated = (rng.random(300) < 0.6).astype(float)
    correct = (rng.random(500) < 0.2).astype(float)
    found = difference_interval(hallucinated, correct, n_resamples=20_000)
    p, q = hallucinated.mean(), correct.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / 300 + q * (1 - q) / 500)
    assert found.estimate == pytest.approx(p - q)
    assert found.low == pytest.approx(p - q - half, abs=0.01)
    assert found.high == pytest.approx(p - q + half, abs=0.01)
    assert found.low > 0 and found.n == (300, 500)
    same = difference_interval(correct, correct)
    assert same.low < 0 < same.high  # no difference: the interval covers 0


def test_seeded_and_checked():
    flags = np.array([0, 1, 1, 0, 1], dtype=float)
    assert bootstrap_interval(flags, seed=7) == bootstrap_interval(flags, seed=7)
    median = bootstrap_interval(np.arange(11.0), lambda v: np.median(v, axis=-1))
    assert median.estimate == 5.0 and median.low <= 5.0 <= median.high
    assert "95 % CI; n=5" in str(bootstrap_interval(flags))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        difference_interval(flags, np.array([np.nan]))
    with pytest.raises(ValueError, match="confidence"):
        Interval(0.5, 0.4, 0.6, 1.5, (3,))
