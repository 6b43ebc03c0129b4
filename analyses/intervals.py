"""Bootstrap confidence intervals for the rates the hallucination link compares, e.g.
P(mutation | hallucinated word) against P(mutation | correct word).

Percentile bootstrap over items (resampling with replacement, a seeded generator): the interval
is the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the statistic over resamples.
For a difference of two rates, each group is resampled on its own (they are independent samples).
`clustered_rates` resamples clusters instead (the items that words come from), keeping each
item's groups together: words of one caption are not independent, and neither are the
hallucinated and correct words of one item.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Shaped


@dataclass(frozen=True)
class Interval:
    """A statistic's value on the data and its bootstrap interval, with the sample sizes."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence} must be in (0, 1)")

    def __str__(self) -> str:
        sizes = ", ".join(f"n={n}" for n in self.n)
        return (
            f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({100 * self.confidence:.0f} % CI; {sizes})"
        )


def _check(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}: need a non-empty 1-D sample, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: the sample holds NaN or infinite values")
    return values


def _bounds(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval: the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_interval(
    values: Shaped[np.ndarray, " n"],
    statistic: Callable[[np.ndarray], np.ndarray] = lambda v: v.mean(axis=-1),
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of `statistic` (vectorised over the last axis; the mean by
    default, which for 0/1 values is a rate)."""
    sample = _check(values, "values")
    rng = np.random.default_rng(seed)
    resamples = sample[rng.integers(0, sample.size, (n_resamples, sample.size))]
    low, high = _bounds(statistic(resamples), confidence)
    return Interval(float(statistic(sample)), low, high, confidence, (sample.size,))


def difference_interval(
    first: Shaped[np.ndarray, " n"],
    second: Shaped[np.ndarray, " m"],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval of mean(first) - mean(second), each group resampled on its own."""
    a, b = _check(first, "first"), _check(second, "second")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, (n_resamples, a.size))].mean(axis=1)
    means_b = b[rng.integers(0, b.size, (n_resamples, b.size))].mean(axis=1)
    low, high = _bounds(means_a - means_b, confidence)
    return Interval(float(a.mean() - b.mean()), low, high, confidence, (a.size, b.size))


def clustered_rates(
    successes: Float[np.ndarray, "cluster group"],
    totals: Float[np.ndarray, "cluster group"],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[list[Interval], Interval | None]:
    """Ratios sum(successes) / sum(totals) of each group (rates; or means, when `successes` hold
    sums of values), and group 0's minus group 1's (None with one group), with percentile
    bootstrap intervals that resample clusters (items) with replacement, keeping each item's
    groups together. A group with no units gets NaN; resamples in which a group has no units are
    left out of its interval."""
    successes, totals = np.asarray(successes, float), np.asarray(totals, float)
    rng = np.random.default_rng(seed)
    n_clusters = len(totals)
    if n_clusters == 0:
        raise ValueError("No items to bootstrap over.")
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), n_resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (weights @ successes) / (weights @ totals)
        observed = successes.sum(0) / totals.sum(0)

    def interval(samples: np.ndarray, estimate: float, n: tuple[int, ...]) -> Interval:
        finite = samples[np.isfinite(samples)]
        if not np.isfinite(estimate) or finite.size == 0:
            return Interval(float("nan"), float("nan"), float("nan"), confidence, n)
        return Interval(float(estimate), *_bounds(finite, confidence), confidence, n)

    sizes = [int(t) for t in totals.sum(0)]
    groups = [interval(rates[:, g], observed[g], (sizes[g],)) for g in range(totals.shape[1])]
    if totals.shape[1] < 2:
        return groups, None
    difference = interval(rates[:, 0] - rates[:, 1], observed[0] - observed[1], tuple(sizes[:2]))
    return groups, difference


def _weighted_auroc(
    inverse: np.ndarray, n_values: int, positive: np.ndarray, weights: np.ndarray
) -> float:
    """P(a positive scores above a negative) + P(a tie) / 2, units weighted; `inverse` is each
    unit's index among the sorted distinct scores."""
    negative_weight = np.bincount(inverse[~positive], weights[~positive], minlength=n_values)
    below = np.cumsum(negative_weight) - negative_weight
    pos = inverse[positive]
    total = weights[positive].sum() * weights[~positive].sum()
    if total == 0:
        return float("nan")
    wins = (weights[positive] * (below[pos] + 0.5 * negative_weight[pos])).sum()
    return float(wins / total)


def clustered_auroc(
    scores: Float[np.ndarray, " n"],
    positive: Shaped[np.ndarray, " n"],
    clusters: Shaped[np.ndarray, " n"],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int = 0,
) -> Interval:
    """The area under the ROC curve of `scores` for telling `positive` units from the others
    (0.5: no better than chance; above: positives score higher), with a percentile bootstrap
    interval that resamples clusters (the items words come from) with replacement."""
    scores = _check(scores, "scores")
    positive = np.asarray(positive, dtype=bool)
    values, inverse = np.unique(scores, return_inverse=True)
    names, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    sizes = (int(positive.sum()), int((~positive).sum()))
    if min(sizes) == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, confidence, sizes)
    observed = _weighted_auroc(inverse, len(values), positive, np.ones(len(scores)))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), n_resamples)
    samples = np.array(
        [_weighted_auroc(inverse, len(values), positive, draw[cluster]) for draw in draws]
    )
    finite = samples[np.isfinite(samples)]
    return Interval(observed, *_bounds(finite, confidence), confidence, sizes)
