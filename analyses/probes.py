"""Layer-wise linear probes: can a linear read-out of a layer's features tell a binary label?

For every layer, a probe (standardised features, then an L2 logistic regression whose C is
chosen by an inner cross-validation) is trained and scored with folds grouped by image, so that
no image lends samples to both the training and the test part: samples of one image share
image-level nuisances, and a probe scored on seen images measures memory, not the label. The
out-of-fold predictions give accuracy and AUROC, each with a percentile bootstrap interval that
resamples images (`analyses.intervals`). Beside it a control task (Hewitt & Liang, 2019): the same
procedure, with the same outer folds, on labels shuffled among images, which no feature can
predict; `selectivity = score - control` is what the layer adds over what the procedure gets by
itself.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from mmlens.analyses.intervals import Interval, clustered_auroc, clustered_rates
from mmlens.errors import ConfigError

METRICS = ("accuracy", "auroc")
Folds = list[tuple[np.ndarray, np.ndarray]]


def _binary(labels: np.ndarray) -> np.ndarray:
    """Labels as 0/1 integers; bool or 0/1 values only, and both classes present."""
    values = np.unique(labels)
    if not np.isin(values, [0, 1]).all():
        raise ConfigError(f"labels must be bool or 0/1, got the values {values[:5].tolist()}")
    if len(values) < 2:
        raise ConfigError(f"labels hold one class only ({values.tolist()}); a probe needs both")
    return labels.astype(np.int64)


def grouped_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> Folds:
    """(train_index, test_index) pairs in which no group (image) is on both sides, stratified by
    label as far as the groups allow (scikit-learn's StratifiedGroupKFold, shuffled by `seed`)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.ndim != 1 or groups.ndim != 1 or len(labels) != len(groups):
        raise ConfigError(
            f"labels (shape {labels.shape}) and groups (shape {groups.shape}) must be 1-D and "
            "of the same length"
        )
    labels = _binary(labels)
    if n_folds < 2:
        raise ConfigError(f"n_folds={n_folds}; need at least 2 folds")
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ConfigError(f"{n_groups} distinct groups (images) cannot fill n_folds={n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    dummy = np.zeros((len(labels), 1))
    return [(train, test) for train, test in splitter.split(dummy, labels, groups)]


def _probe(c: float) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    probs = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)  # float32 rounds 1 - 1e-12 to 1
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


def _out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: Folds,
    inner_folds: int,
    cs: list[float],
    seed: int,
) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold probabilities of label 1, and the C chosen in each outer fold (lowest log loss
    over inner folds grouped by image, made from the outer training part only)."""
    probs = np.full(len(y), np.nan)
    chosen = []
    for train, test in folds:
        inner = grouped_folds(y[train], groups[train], inner_folds, seed)
        x_train, y_train = x[train], y[train]
        losses = [
            sum(
                _log_loss(
                    y_train[b],
                    _probe(c).fit(x_train[a], y_train[a]).predict_proba(x_train[b])[:, 1],
                )
                for a, b in inner
            )
            for c in cs
        ]
        best = cs[int(np.argmin(losses))]  # ties: the smallest C, the most regularised
        probs[test] = _probe(best).fit(x_train, y_train).predict_proba(x[test])[:, 1]
        chosen.append(best)
    return probs, chosen


def _control_labels(labels: np.ndarray, group: np.ndarray, folds: Folds, seed: int) -> np.ndarray:
    """Labels shuffled among images within each outer test fold: an image takes the label vector
    of another image of the same fold with as many samples; the samples of an image alone in its
    size (in its fold) are shuffled among themselves. This keeps each fold's class counts (so the
    folds stay stratified for the control) and each image's within-image label structure."""
    rng = np.random.default_rng(seed)
    members = np.split(np.argsort(group, kind="stable"), np.cumsum(np.bincount(group))[:-1])
    shuffled = labels.copy()
    for _, test in folds:
        ids = np.unique(group[test])
        sizes = np.array([len(members[g]) for g in ids])
        alone: list[int] = []
        for size in np.unique(sizes):
            same = ids[sizes == size]
            if len(same) < 2:
                alone.extend(members[same[0]])
                continue
            for g, h in zip(same, rng.permutation(same), strict=True):
                shuffled[members[g]] = labels[members[h]]
        kept = np.array(alone, dtype=np.int64)
        shuffled[kept] = rng.permutation(labels[kept])
    return shuffled


def _mean_interval(intervals: list[Interval]) -> Interval:
    """The mean of several controls' estimates and bounds (one shuffle alone swings widely: with
    few positives a null probe's AUROC spreads by +-0.2 between shuffles)."""
    first = intervals[0]
    return Interval(
        float(np.mean([i.estimate for i in intervals])),
        float(np.mean([i.low for i in intervals])),
        float(np.mean([i.high for i in intervals])),
        first.confidence,
        (),
    )


def _scores(
    probs: np.ndarray, y: np.ndarray, group: np.ndarray, n_boot: int, confidence: float, seed: int
) -> dict[str, Interval]:
    """Accuracy (threshold 0.5) and AUROC of out-of-fold probabilities, intervals over images."""
    correct = ((probs >= 0.5) == (y == 1)).astype(float)
    n_groups = group.max() + 1
    successes = np.bincount(group, correct, minlength=n_groups)[:, None]
    totals = np.bincount(group, minlength=n_groups).astype(float)[:, None]
    common = {"confidence": confidence, "n_resamples": n_boot, "seed": seed}
    (accuracy,), _ = clustered_rates(successes, totals, **common)
    auroc = clustered_auroc(probs, y.astype(bool), group, **common)
    return {"accuracy": accuracy, "auroc": auroc}


def layer_probes(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    layers: Sequence[int] | None = None,
    n_folds: int = 5,
    inner_folds: int = 3,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    control: str | None = "shuffled",
    control_repeats: int = 5,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """A grouped, cross-validated linear probe of each layer of `features` [sample, layer, d] for
    binary `labels` [sample], `groups` [sample] naming the image of each sample. One row per
    (layer, metric): layer, metric, score, low, high, control, control_low, control_high,
    selectivity, n, n_groups, best_C (median over outer folds).

    The control ("shuffled") reruns the probe, with the same outer folds, on labels shuffled among
    images within each outer test fold (an image takes the labels of an image of the same fold
    and size; see `_control_labels`), so it keeps each fold's class counts and the within-image
    structure but no feature can predict it; it is averaged over `control_repeats` shuffles
    (estimate and bounds), since one shuffle swings widely. `control=None` leaves the control
    columns NaN.
    Intervals resample images, with the same seed for score and control; they hold the fitted
    probes fixed, so they leave out the spread from training (cross-validated scores of a null
    probe vary more than a fixed scorer's), which is what the control is there to show."""
    x = np.asarray(features)
    y, names = np.asarray(labels), np.asarray(groups)
    if x.ndim != 3:
        raise ConfigError(f"features must be [sample, layer, d], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ConfigError(f"features (dtype {x.dtype}) must be finite numbers (no NaN or inf)")
    if y.shape != (len(x),) or names.shape != (len(x),):
        raise ConfigError(
            f"features hold {len(x)} samples but labels have shape {y.shape} and groups "
            f"{names.shape}; need one label and one group per sample"
        )
    layer_numbers = list(range(x.shape[1])) if layers is None else list(layers)
    if len(layer_numbers) != x.shape[1]:
        raise ConfigError(f"{len(layer_numbers)} layer numbers for {x.shape[1]} layers")
    if control not in ("shuffled", None):
        raise ConfigError(f"control={control!r}; choose 'shuffled' or None")
    if control_repeats < 1:
        raise ConfigError(f"control_repeats={control_repeats}; need at least 1 shuffle")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be in (0, 1)")
    if not Cs or min(Cs) <= 0:
        raise ConfigError(f"Cs={tuple(Cs)}; need positive regularisation strengths")
    cs = sorted(float(c) for c in Cs)
    folds = grouped_folds(y, names, n_folds, seed)
    y = _binary(y)
    group = np.unique(names, return_inverse=True)[1].astype(np.int64)
    shuffles = (
        [_control_labels(y, group, folds, seed + repeat) for repeat in range(control_repeats)]
        if control
        else []
    )
    nan = float("nan")
    rows = []
    for index, layer in enumerate(layer_numbers):
        probs, chosen = _out_of_fold(x[:, index], y, names, folds, inner_folds, cs, seed)
        found = _scores(probs, y, group, n_boot, confidence, seed)
        baseline = dict.fromkeys(METRICS, Interval(nan, nan, nan, confidence, ()))
        if shuffles:
            repeats = []
            for shuffled in shuffles:
                control_probs, _ = _out_of_fold(
                    x[:, index], shuffled, names, folds, inner_folds, cs, seed
                )
                repeats.append(_scores(control_probs, shuffled, group, n_boot, confidence, seed))
            baseline = {metric: _mean_interval([r[metric] for r in repeats]) for metric in METRICS}
        for metric in METRICS:
            score, ctrl = found[metric], baseline[metric]
            rows.append(
                {
                    "layer": layer,
                    "metric": metric,
                    "score": score.estimate,
                    "low": score.low,
                    "high": score.high,
                    "control": ctrl.estimate,
                    "control_low": ctrl.low,
                    "control_high": ctrl.high,
                    "selectivity": score.estimate - ctrl.estimate,
                    "n": len(y),
                    "n_groups": int(group.max() + 1),
                    "best_C": float(np.median(chosen)),
                }
            )
    table = pd.DataFrame(rows)
    majority = float(max(y.mean(), 1 - y.mean()))
    table.attrs.update(confidence=confidence, n_boot=n_boot, control=control, majority=majority)
    return table


def plot_layer_probes(table: pd.DataFrame, metric: str = "auroc") -> Figure:
    """Probe score by layer with its interval band, the control (dashed) with its band, and the
    chance level: 0.5 for AUROC, the majority-class rate for accuracy."""
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r}; choose one of {METRICS}")
    needed = {"layer", "metric", "score", "low", "high", "control", "control_low", "control_high"}
    if not needed <= set(table.columns):
        raise ConfigError("This table is not from layer_probes.")
    rows = table[table.metric == metric].sort_values("layer")
    if rows.empty:
        raise ConfigError(f"The table has no {metric!r} rows.")
    figure = Figure(figsize=(6.0, 3.6), layout="constrained")
    axis = figure.subplots()
    level = round(100 * table.attrs.get("confidence", 0.95))
    axis.plot(rows.layer, rows.score, "o-", color="tab:blue", label="probe")
    axis.fill_between(rows.layer, rows.low, rows.high, color="tab:blue", alpha=0.2)
    if rows.control.notna().any():
        axis.plot(rows.layer, rows.control, "--", color="tab:gray", label="control (shuffled)")
        axis.fill_between(
            rows.layer, rows.control_low, rows.control_high, color="tab:gray", alpha=0.15
        )
    chance = 0.5 if metric == "auroc" else table.attrs.get("majority", 0.5)
    axis.axhline(chance, color="0.4", linewidth=0.8, linestyle=":", label=f"chance ({chance:.2f})")
    axis.set_ylim(min(0.0, rows.low.min()), 1.0)
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_ylabel("AUROC" if metric == "auroc" else "accuracy")
    axis.set_title(f"Linear probe by layer; {level} % intervals over images", fontsize=9)
    axis.legend(fontsize=8)
    return figure
