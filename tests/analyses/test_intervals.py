"""Bootstrap intervals against scipy's percentile bootstrap and against the normal approximation
of a rate, on samples with known answers."""

import numpy as np
import pytest
from scipy import stats

from mmlens.analyses.intervals import (
    Interval,
    bootstrap_interval,
    clustered_rates,
    difference_interval,
)


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


def _coverage(p_item: np.ndarray, sizes: np.ndarray, cluster: bool, rng) -> bool:
    units = [rng.random(n) < p for p, n in zip(p_item, sizes, strict=True)]
    if cluster:
        successes = np.array([[u.sum()] for u in units], dtype=float)
        totals = sizes[:, None].astype(float)
    else:  # every word its own "item": ignores that words of one caption go together
        flat = np.concatenate(units).astype(float)
        successes, totals = flat[:, None], np.ones_like(flat)[:, None]
    (ci,), none = clustered_rates(successes, totals, n_resamples=1000, seed=int(rng.integers(1e9)))
    assert none is None
    return ci.low <= 0.3 <= ci.high


def test_item_bootstrap_covers_the_true_rate_where_word_bootstrap_does_not():
    """Words within an item share their item's rate (mean 0.3): resampling items keeps ~95 %
    coverage; resampling words as if independent is too narrow."""
    rng = np.random.default_rng(0)
    hits = {True: 0, False: 0}
    for _ in range(200):
        p_item = rng.beta(0.6, 1.4, 40)  # mean 0.3, strongly varying between items
        sizes = rng.integers(2, 12, 40)
        for cluster in hits:
            hits[cluster] += _coverage(p_item, sizes, cluster, rng)
    assert 0.88 <= hits[True] / 200 <= 0.99
    assert hits[False] / 200 < hits[True] / 200 - 0.1


def test_clustered_ratios_pool_within_items_and_resample_items_whole():
    sums = np.array([[3.0, 10.0], [0.0, 5.0], [6.0, 0.0]])  # e.g. summed layers per item
    counts = np.array([[1.0, 2.0], [0.0, 1.0], [2.0, 0.0]])
    (first, second), difference = clustered_rates(sums, counts, n_resamples=2000)
    assert first.estimate == pytest.approx(9 / 3) and second.estimate == pytest.approx(15 / 3)
    assert difference.estimate == pytest.approx(-2) and first.n == (3,) and difference.n == (3, 3)
    assert first.low <= first.estimate <= first.high
    # each resample's ratio is one of the values the items can make: between 3 and 3
    assert first.low == first.high == 3.0
    with pytest.raises(ValueError, match="No items"):
        clustered_rates(np.zeros((0, 2)), np.zeros((0, 2)))
