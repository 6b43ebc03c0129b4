"""Stages of knowledge evolution: the critical layer and the mutation layers.

**Numbering.** Layers are Hugging Face `hidden_states` numbers (0 = embeddings, l = output of
block l-1). A *pair* of adjacent recorded layers (l, l+1) is labelled by its first layer l, as the
paper's heatmap labels it: with every block recorded, pair l is the change block l makes. Critical
and mutation layers are pair labels, so "mutation at 30" means JSD(layer 30, layer 31) jumps, and
skipping the mutation means skipping block 30.

**Definition** (each generated token alone, on its adjacent-layer JSD profile `d`, in nats):

1. `x = log(max(d, noise_floor))`: JSD spans decades (0.6 nats early, 1e-5 when stable), so the
   profile is read on a log scale, and values under the noise floor are equal.
2. The **critical layer** c is the best single split of `x` into an evolving prefix and a stable
   suffix: the split with the least absolute deviation from each side's median (a robust step fit,
   so neither one large first jump nor a late spike moves it). It counts only if the prefix's
   median JSD is at least `min_drop` times the suffix's, and the first `min_stable` pairs from c
   are below the mutation threshold (else c moves to the first such stretch in the suffix, or
   there is none).
3. The **stable level** is the suffix's median JSD and its **spread** the suffix's median absolute
   deviation (scaled by 1.4826, a standard deviation for normal noise; 0 when the suffix has
   fewer than `spread_pairs` pairs, too few to measure a spread, as in models of a few blocks).
   A **mutation** is a pair after c whose JSD exceeds `max(mutation_ratio * level, level +
   mutation_spread * spread, mutation_floor)`: a jump measured against the token's own quiet
   stretch, its level and how much it wanders (a stable stage whose JSD is itself noisy does not
   make mutations of its noise), optionally also where the top-1 token flips.
4. The **probability rise layer** is the first layer from which the token's probability stays
   `>= prob_floor` for `min_stable` layers or to the last layer (the paper's "probabilities leave
   ~0").

Everything is relative to each token's own profile; nothing is tied to a layer number or a model
size. The absolute floors keep noise (JSD 1e-6) from making stages. With `lens="paper"` traces the
last pair compares an un-normed with a normed layer and usually shows as a mutation there, as in
the paper's figures.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from matplotlib.figure import Figure

from mmlens.errors import TraceFormatError
from mmlens.trace import Trace

#: Median absolute deviation -> standard deviation, for normally distributed noise.
MAD_TO_SIGMA = 1.4826
PAIR_NOTE = "pair l = layers l -> l+1 (block l)"
STAGE_COLUMNS = [
    "critical_layer", "prob_rise_layer", "prob_at_critical", "mutation_layers", "has_mutation",
    "evolving_jsd", "stable_jsd", "stable_spread", "threshold",
]  # fmt: skip


@dataclass(frozen=True)
class StageParams:
    """Detector settings: ratios between a token's own JSD levels, and floors in nats."""

    noise_floor: float = 1e-4
    min_drop: float = 5.0
    mutation_ratio: float = 3.0
    mutation_spread: float = 8.0
    spread_pairs: int = 8
    mutation_floor: float = 0.02
    min_stable: int = 2
    prob_floor: float = 0.05
    top1_flips: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.noise_floor < self.mutation_floor:
            raise ValueError(
                f"noise_floor={self.noise_floor}, mutation_floor={self.mutation_floor}: "
                "need 0 < noise_floor < mutation_floor."
            )
        if self.min_drop <= 1 or self.mutation_ratio <= 1:
            raise ValueError(
                f"min_drop={self.min_drop}, mutation_ratio={self.mutation_ratio}: both must be > 1."
            )
        if self.mutation_spread < 0:
            raise ValueError(f"mutation_spread={self.mutation_spread}: must be >= 0.")
        if self.spread_pairs < 3:
            raise ValueError(f"spread_pairs={self.spread_pairs}: must be >= 3.")
        if self.min_stable < 1:
            raise ValueError(f"min_stable={self.min_stable}: must be >= 1.")
        if not 0 < self.prob_floor < 1:
            raise ValueError(f"prob_floor={self.prob_floor}: must be in (0, 1).")


DEFAULT_PARAMS = StageParams()


def _robust_split(x: np.ndarray, min_stable: int) -> np.ndarray:
    """Per row, the split c (>= 1, leaving >= min_stable pairs, x[:c] higher than x[c:]) with the
    least absolute deviation from the medians of x[:c] and x[c:]; 0 where no split drops."""
    n_rows, n_pairs = x.shape
    last = n_pairs - min_stable
    if last < 1:
        return np.zeros(n_rows, dtype=np.int64)
    costs = np.empty((n_rows, last))
    for c in range(1, last + 1):
        prefix, suffix = x[:, :c], x[:, c:]
        high, low = np.median(prefix, axis=1), np.median(suffix, axis=1)
        cost = np.abs(prefix - high[:, None]).sum(1) + np.abs(suffix - low[:, None]).sum(1)
        costs[:, c - 1] = np.where(high > low, cost, np.inf)  # only a drop is a stabilisation
    return np.where(np.isfinite(costs).any(1), costs.argmin(axis=1) + 1, 0)


def _first_run(mask: np.ndarray, run: int, start: int = 0, *, to_the_end: bool) -> int | None:
    """First index >= start from which `run` entries are True; with `to_the_end`, a shorter run
    that reaches the end of the array counts too."""
    for first in range(start, len(mask)):
        window = mask[first : first + run]
        if window.all() and (len(window) == run or to_the_end):
            return first
    return None


def detect_stages(
    jsd: Float[np.ndarray, "token pair"],
    prob: Float[np.ndarray, "token layer"],
    layers: Int[np.ndarray, " layer"],
    params: StageParams = DEFAULT_PARAMS,
    top1: Int[np.ndarray, "token layer"] | None = None,
) -> pd.DataFrame:
    """The detector on arrays: one row per token, with the levels it decided on.

    Columns: critical_layer, prob_rise_layer, prob_at_critical, mutation_layers (tuple),
    has_mutation, evolving_jsd and stable_jsd (medians of the two sides, nats), stable_spread
    (the stable side's scaled median absolute deviation, nats), threshold (nats).
    """
    if jsd.shape[1] != len(layers) - 1:
        raise TraceFormatError(f"{jsd.shape[1]} JSD pairs for {len(layers)} layers.")
    d = np.nan_to_num(jsd.astype(np.float64), nan=0.0)
    x = np.log(np.maximum(d, params.noise_floor))
    splits = _robust_split(x, params.min_stable)
    rows = []
    for row, split in enumerate(splits.tolist()):
        evolving = float(np.exp(np.median(x[row, :split]))) if split else float("nan")
        quiet_side = np.exp(x[row, split:])
        stable = float(np.median(quiet_side))
        spread = 0.0
        if len(quiet_side) >= params.spread_pairs:
            spread = MAD_TO_SIGMA * float(np.median(np.abs(quiet_side - stable)))
        threshold = max(
            params.mutation_ratio * stable,
            stable + params.mutation_spread * spread,
            params.mutation_floor,
        )
        critical = None
        if split and evolving >= params.min_drop * stable:
            quiet = d[row] <= threshold
            critical = _first_run(quiet, params.min_stable, split, to_the_end=False)
        mutations: list[int] = []
        if critical is not None:
            mutations = [i for i in range(critical, len(d[row])) if d[row, i] > threshold]
            if params.top1_flips and top1 is not None:
                flips = np.flatnonzero(top1[row, 1:] != top1[row, :-1])
                mutations = sorted(set(mutations) | {int(i) for i in flips if i >= critical})
        rise = _first_run(prob[row] >= params.prob_floor, params.min_stable, to_the_end=True)
        rows.append(
            {
                "critical_layer": None if critical is None else int(layers[critical]),
                "prob_rise_layer": None if rise is None else int(layers[rise]),
                "prob_at_critical": None if critical is None else float(prob[row, critical]),
                "mutation_layers": tuple(int(layers[i]) for i in mutations),
                "has_mutation": bool(mutations),
                "evolving_jsd": evolving,
                "stable_jsd": stable,
                "stable_spread": spread,
                "threshold": threshold,
            }
        )
    frame = pd.DataFrame(rows, columns=STAGE_COLUMNS)
    for column in ("critical_layer", "prob_rise_layer"):
        frame[column] = frame[column].astype("Int64")
    frame["has_mutation"] = frame.has_mutation.astype(bool)
    return frame


def token_stages(trace: Trace, params: StageParams = DEFAULT_PARAMS) -> pd.DataFrame:
    """One row per generated token: step, token and `detect_stages`'s columns."""
    table = detect_stages(
        trace.jsd[:, :-1],
        np.exp(trace.logprob.astype(np.float64)),
        trace.layers,
        params,
        top1=trace.topk_ids[:, :, 0],
    )
    table.insert(0, "step", np.arange(trace.n_steps))
    table.insert(1, "token", list(trace.tokens))
    return table


def frame_stages(tokens: pd.DataFrame, params: StageParams = DEFAULT_PARAMS) -> pd.DataFrame:
    """`detect_stages` over a run's tokens table (one row per item, step and layer; columns order,
    step, layer, jsd, prob, top1_id): one row per (order, step)."""
    needed = {"order", "step", "layer", "jsd", "prob", "top1_id"}
    if missing := needed - set(tokens.columns):
        raise TraceFormatError(f"The tokens table lacks columns {sorted(missing)}.")
    if tokens.empty:
        return pd.DataFrame(columns=["order", "step", *STAGE_COLUMNS])
    tokens = tokens.sort_values(["order", "step", "layer"])
    layers = np.sort(tokens.layer.unique())
    n_layers = len(layers)
    if len(tokens) % n_layers or not (tokens.groupby(["order", "step"]).size() == n_layers).all():
        raise TraceFormatError("Tokens of a run recorded different layers; stages need one set.")
    shape = (-1, n_layers)
    found = detect_stages(
        tokens.jsd.to_numpy().reshape(shape)[:, :-1],
        tokens.prob.to_numpy().reshape(shape),
        layers,
        params,
        top1=tokens.top1_id.to_numpy().reshape(shape),
    )
    keys = tokens[tokens.layer == layers[0]][["order", "step"]].reset_index(drop=True)
    return pd.concat([keys, found], axis=1)


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
    mutated = table[table.has_mutation.astype(bool)]
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
    """Stage of every recorded layer: rapid evolution (before the critical layer), stabilization
    (up to the first mutation pair's first layer), mutation (after it), output (the last)."""
    names = []
    first_mutation = min(stages.mutation_layers, default=None)
    last = int(trace.layers[-1])
    for layer in trace.layers:
        if layer == last:
            names.append("output")
        elif stages.critical_layer is None or layer < stages.critical_layer:
            names.append("rapid evolution")
        elif first_mutation is None or layer <= first_mutation:
            names.append("stabilization")
        else:
            names.append("mutation")
    return names


def plot_stages(trace: Trace, params: StageParams = DEFAULT_PARAMS) -> Figure:
    """Median JSD profile (log scale) with the detected stages shaded, and where critical and
    mutation layers fall."""
    table = token_stages(trace, params)
    stages = summarize_stages(table)
    figure = Figure(figsize=(10, 3.4), layout="constrained")
    profile_axis, count_axis = figure.subplots(1, 2, width_ratios=[3, 2])
    pairs = trace.layers[:-1]
    values = np.maximum(trace.jsd[:, :-1].astype(np.float64), params.noise_floor)
    profile_axis.plot(pairs, np.nanmedian(values, axis=0), marker="o", ms=3, color="black")
    profile_axis.set_yscale("log")
    if stages.critical_layer is not None:
        profile_axis.axvspan(
            pairs[0], stages.critical_layer, color="tab:red", alpha=0.12, label="rapid evolution"
        )
        end = min(stages.mutation_layers, default=int(pairs[-1]))
        profile_axis.axvspan(
            stages.critical_layer, end, color="tab:green", alpha=0.12, label="stabilization"
        )
        profile_axis.legend(fontsize=7)
    for layer in stages.mutation_layers:
        profile_axis.axvline(layer, color="tab:purple", ls="--", lw=1)
    profile_axis.set_xlabel(f"layer pair ({PAIR_NOTE})")
    profile_axis.set_ylabel("median JSD (nats)")
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
    count_axis.set_xlabel(f"layer ({PAIR_NOTE})")
    count_axis.set_ylabel("tokens")
    count_axis.set_title(f"{stages.mutation_fraction:.0%} of tokens have a mutation", fontsize=9)
    count_axis.legend(fontsize=7)
    return figure
