"""A benchmark's scores: named metrics as fractions, the counts behind them, and what to know."""

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Scores:
    """Metrics (fractions in [0, 1], or None where the denominator is 0), counts and notes.

    `items` is the per-item table the metrics were computed from, for notebooks.
    """

    benchmark: str
    metrics: dict[str, float | None]
    counts: dict[str, int]
    notes: tuple[str, ...] = ()
    not_fractions: tuple[str, ...] = ()  # metrics that are not rates (CHAIR's Len)
    items: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.metrics.items():
            if value is not None and not math.isfinite(value):
                raise ValueError(f"metric {name} = {value}: use None for undefined")

    def to_dict(self) -> dict[str, Any]:
        """One flat object: the metrics with lower-case keys, then the counts."""
        return {**self.metrics, **self.counts}

    def table(self, percent: bool = True) -> str:
        """A readable table (percentages by default, as the papers print them)."""
        width = max(len(name) for name in [*self.metrics, *self.counts])
        lines = [self.benchmark + (" (rates in %)" if percent else "")]
        for name, value in self.metrics.items():
            if value is None:
                shown = "n/a"
            elif name in self.not_fractions:
                shown = f"{value:.1f}"
            else:
                shown = f"{100 * value:.1f}" if percent else f"{value:.4f}"
            lines.append(f"  {name.ljust(width)}  {shown}")
        for name, count in self.counts.items():
            lines.append(f"  {name.ljust(width)}  {count}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    """numerator / denominator, or None when the denominator is 0."""
    return numerator / denominator if denominator else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of precision and recall; None if either is undefined, 0 if both are 0."""
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
