"""Stages of knowledge evolution: the critical layer and the mutation layers.

For each generated token the detector reads its adjacent-layer JSD profile `d` (pairs of recorded
layers) and its probability `p` at every layer:

* a pair is *stable* when `d <= max(stable_fraction * max(d), stable_floor)`;
* the **critical layer** is the first layer from which `min_run` consecutive pairs are stable
  (a stable stretch shorter than that does not count, even at the end):
  the distribution stops churning there (the paper's "JSD collapses", layer ~18-20 for LLaVA-1.5);
* the **probability rise layer** is the first layer from which `p >= prob_floor` holds for
  `min_run` layers, or up to the last layer (the paper's "probabilities leave ~0");
* **mutation layers** are layers after the stable run whose incoming pair jumps again,
  `d > max(mutation_fraction * max(d), mutation_floor)` (optionally: where the top-1 flips).

Thresholds are relative to each token's own profile, so nothing is tied to a layer number or a
model size; the small absolute floors (nats) keep a profile that is flat noise from yielding
"stages" made of noise. With `lens="paper"` traces the last pair compares an un-normed with a
normed layer and usually shows up as a mutation at the last layer, as in the paper's figures.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.trace import Trace


@dataclass(frozen=True)
class StageParams:
    """Detector thresholds (fractions of each token's largest adjacent-layer JSD)."""

    stable_fraction: float = 0.1
    mutation_fraction: float = 0.3
    stable_floor: float = 1e-3
    mutation_floor: float = 1e-2
    min_run: int = 3
    prob_floor: float = 0.05
    top1_flips: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.stable_fraction < self.mutation_fraction <= 1:
            raise ValueError("need 0 < stable_fraction < mutation_fraction <= 1")
        if not 0 <= self.stable_floor < self.mutation_floor:
            raise ValueError("need 0 <= stable_floor < mutation_floor")
        if self.min_run < 1:
            raise ValueError("min_run must be >= 1")
        if not 0 < self.prob_floor < 1:
            raise ValueError("prob_floor must be in (0, 1)")


DEFAULT_PARAMS = StageParams()


def _first_run(mask: np.ndarray, run: int, *, to_the_end: bool) -> int | None:
    """First index from which `run` consecutive entries are True; with `to_the_end`, a shorter
    run that reaches the end of the array counts too."""
    for start in range(len(mask)):
        window = mask[start : start + run]
        if window.all() and (len(window) == run or (to_the_end and start + run > len(mask))):
            return start
    return None


def token_stages(trace: Trace, params: StageParams = DEFAULT_PARAMS) -> pd.DataFrame:
    """One row per generated token: critical layer, probability rise layer, mutation layers."""
    rows = []
    layers = trace.layers
    for step in range(trace.n_steps):
        jsd = trace.jsd[step, :-1].astype(np.float64)
        prob = np.exp(trace.logprob[step].astype(np.float64))
        peak = float(jsd.max()) if jsd.size else 0.0
        stable = jsd <= max(params.stable_fraction * peak, params.stable_floor)
        start = _first_run(stable, params.min_run, to_the_end=False)
        rise = _first_run(prob >= params.prob_floor, params.min_run, to_the_end=True)
        mutations: list[int] = []
        if start is not None:
            after = range(start + params.min_run, len(jsd))
            jump = max(params.mutation_fraction * peak, params.mutation_floor)
            mutations = [int(layers[i + 1]) for i in after if jsd[i] > jump]
            if params.top1_flips:
                top1 = trace.topk_ids[step, :, 0]
                flips = [int(layers[i + 1]) for i in after if top1[i + 1] != top1[i]]
                mutations = sorted(set(mutations) | set(flips))
        rows.append(
            {
                "step": step,
                "token": trace.tokens[step],
                "critical_layer": None if start is None else int(layers[start]),
                "prob_rise_layer": None if rise is None else int(layers[rise]),
                "prob_at_critical": None if start is None else float(prob[start]),
                "mutation_layers": tuple(mutations),
                "has_mutation": bool(mutations),
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("critical_layer", "prob_rise_layer"):
        frame[column] = frame[column].astype("Int64")
    return frame


@dataclass(frozen=True)
class TraceStages:
    """Stages of a whole trace (or data set): what the skip experiments and plots use."""

    critical_layer: int | None
    mutation_layers: tuple[int, ...]
    n_tokens: int
    mutation_fraction: float
    critical_counts: dict[int, int]
    mutation_counts: dict[int, int]


def summarize_stages(
    tables: pd.DataFrame | Iterable[pd.DataFrame], min_share: float = 0.25
) -> TraceStages:
    """Median critical layer, and the mutation layers flagged for at least `min_share` of the
    tokens that have a mutation, over one or many `token_stages` tables."""
    table = (
        tables if isinstance(tables, pd.DataFrame) else pd.concat(list(tables), ignore_index=True)
    )
    critical = table.critical_layer.dropna()
    mutated = table[table.has_mutation]
    counts = Counter(layer for layers in mutated.mutation_layers for layer in layers)
    common = tuple(
        sorted(layer for layer, n in counts.items() if n >= min_share * max(len(mutated), 1))
    )
    return TraceStages(
        critical_layer=None if critical.empty else int(np.median(critical.to_numpy(dtype=float))),
        mutation_layers=common,
        n_tokens=len(table),
        mutation_fraction=float(table.has_mutation.mean()) if len(table) else 0.0,
        critical_counts={int(k): int(v) for k, v in critical.value_counts().sort_index().items()},
        mutation_counts=dict(sorted(counts.items())),
    )


def trace_stages(trace: Trace, params: StageParams = DEFAULT_PARAMS) -> TraceStages:
    """`summarize_stages` of one trace's `token_stages`."""
    return summarize_stages(token_stages(trace, params))


def layer_groups(trace: Trace, stages: TraceStages) -> list[str]:
    """Stage name of every recorded layer: rapid evolution, stabilization, mutation, output."""
    names = []
    first_mutation = min(stages.mutation_layers, default=None)
    last = int(trace.layers[-1])
    for layer in trace.layers:
        if layer == last:
            names.append("output")
        elif stages.critical_layer is None or layer < stages.critical_layer:
            names.append("rapid evolution")
        elif first_mutation is None or layer < first_mutation:
            names.append("stabilization")
        else:
            names.append("mutation")
    return names


def plot_stages(trace: Trace, params: StageParams = DEFAULT_PARAMS) -> Figure:
    """Mean JSD profile with the detected stages shaded, and where critical/mutation layers fall."""
    table = token_stages(trace, params)
    stages = summarize_stages(table)
    figure = Figure(figsize=(10, 3.4), layout="constrained")
    profile_axis, count_axis = figure.subplots(1, 2, width_ratios=[3, 2])
    mean = np.nanmean(trace.jsd[:, :-1].astype(np.float64), axis=0)
    profile_axis.plot(trace.layers[:-1], mean, marker="o", ms=3, color="black")
    if stages.critical_layer is not None:
        profile_axis.axvspan(
            trace.layers[0],
            stages.critical_layer,
            color="tab:red",
            alpha=0.12,
            label="rapid evolution",
        )
        end = min(stages.mutation_layers, default=int(trace.layers[-1]))
        profile_axis.axvspan(
            stages.critical_layer, end, color="tab:green", alpha=0.12, label="stabilization"
        )
    for layer in stages.mutation_layers:
        profile_axis.axvline(layer - 0.5, color="tab:purple", ls="--", lw=1)
    profile_axis.set_xlabel("layer l (JSD of l and the next layer)")
    profile_axis.set_ylabel("mean JSD (nats)")
    if stages.critical_layer is not None:
        profile_axis.legend(fontsize=7)
    count_axis.bar(
        list(stages.critical_counts),
        list(stages.critical_counts.values()),
        color="tab:green",
        label="critical layer",
    )
    count_axis.bar(
        list(stages.mutation_counts),
        list(stages.mutation_counts.values()),
        color="tab:purple",
        alpha=0.6,
        label="mutation layers",
    )
    count_axis.set_xlabel("layer")
    count_axis.set_ylabel("tokens")
    count_axis.set_title(f"{stages.mutation_fraction:.0%} of tokens have a mutation", fontsize=9)
    count_axis.legend(fontsize=7)
    return figure
