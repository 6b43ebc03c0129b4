"""Layer probes: a planted direction is found at its layers only, the shuffled control sits at
chance, folds never split an image, grouping stops an image-level leak, and intervals count
images rather than samples."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from mmlens.analyses.probes import (
    _control_labels,
    grouped_folds,
    layer_probes,
    plot_layer_probes,
)
from mmlens.errors import ConfigError

PLANTED = (3, 4)


def _images(n_images, rng, low=1, high=3):
    """Group ids: image i has between `low` and `high` samples."""
    return np.repeat(np.arange(n_images), rng.integers(low, high + 1, n_images))


def _planted(seed=0, n_images=120, n_layers=7, d=16, shift=4.0):
    """Gaussian features with an image-level offset; at PLANTED layers the label moves them along
    one fixed direction."""
    rng = np.random.default_rng(seed)
    groups = _images(n_images, rng)
    labels = rng.random(len(groups)) < 0.5
    offset = rng.normal(size=(n_images, n_layers, d))[groups]
    features = rng.normal(size=(len(groups), n_layers, d)) + offset
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    for layer in PLANTED[: max(n_layers - 3, 0)]:
        features[:, layer] += shift * labels[:, None] * direction
    return features, labels, groups


@pytest.fixture(scope="module")
def planted_table():
    features, labels, groups = _planted()
    return layer_probes(features, labels, groups, n_boot=200)


def test_planted_direction_found_at_its_layers_only(planted_table):
    auroc = planted_table[planted_table.metric == "auroc"].set_index("layer")
    assert list(auroc.index) == list(range(7))
    for layer, row in auroc.iterrows():
        if layer in PLANTED:
            assert row.score > 0.9 and row.low > 0.5
            assert row.selectivity > 0.35
        else:
            assert row.score < 0.65 or row.low < 0.5 < row.high
            assert abs(row.selectivity) < 0.2
        assert row.low <= row.score <= row.high
    accuracy = planted_table[planted_table.metric == "accuracy"].set_index("layer")
    assert (accuracy.loc[list(PLANTED), "score"] > 0.8).all()
    assert (planted_table.n == planted_table.n.iloc[0]).all()
    assert (planted_table.n_groups == 120).all()
    assert planted_table.best_C.isin([0.01, 0.1, 1.0, 10.0]).all()  # median of 5 folds' C


def test_shuffled_control_at_chance_on_planted_layers(planted_table):
    for metric in ("auroc", "accuracy"):
        rows = planted_table[(planted_table.metric == metric) & planted_table.layer.isin(PLANTED)]
        # cross-validated null scores spread wider than the interval around fitted probes
        assert (rows.control_low - 0.05 < 0.5).all() and (rows.control_high + 0.05 > 0.5).all()
        assert ((rows.control - 0.5).abs() < 0.15).all()
        assert (rows.control_low <= rows.control).all()
        assert (rows.control <= rows.control_high).all()


def test_control_labels_keep_fold_counts_and_images():
    """The control shuffles labels among images of one test fold and size: each fold keeps its
    class counts, an image's samples keep sharing a label, and the labels do move."""
    rng = np.random.default_rng(2)
    groups = _images(90, rng, 1, 4)
    labels = (rng.random(90) < 0.4)[groups].astype(np.int64)
    folds = grouped_folds(labels, groups, seed=1)
    shuffled = _control_labels(labels, groups, folds, 1)
    for _, test in folds:
        assert shuffled[test].sum() == labels[test].sum()
    assert all(len(set(shuffled[groups == g])) == 1 for g in range(90))
    assert 0.3 < (shuffled != labels).mean() < 0.7


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_folds_never_split_an_image(seed):
    rng = np.random.default_rng(seed)
    groups = _images(50, rng, 1, 4).astype(str)  # string ids work too
    labels = rng.random(len(groups)) < 0.4
    folds = grouped_folds(labels, groups, n_folds=5, seed=seed)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(groups)))  # each sample tested once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        assert 0 < labels[test].mean() < 1  # stratified: both classes in every test fold
    assert [t.tolist() for _, t in folds] == [
        t.tolist() for _, t in grouped_folds(labels, groups, n_folds=5, seed=seed)
    ]


def test_grouping_stops_an_image_level_leak():
    """Labels belong to images and say nothing about features, but an image's samples share a
    large offset: ungrouped folds (each sample its own group) score well by recognising the
    image, grouped folds score chance."""
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(80), 3)
    labels = (rng.random(80) < 0.5)[groups]
    features = 3.0 * rng.normal(size=(80, 1, 64))[groups]
    features += 0.3 * rng.normal(size=features.shape)
    common = {"n_boot": 200, "control": None}
    grouped = layer_probes(features, labels, groups, **common).set_index("metric")
    ungrouped = layer_probes(features, labels, np.arange(240), **common).set_index("metric")
    assert ungrouped.loc["auroc", "score"] > 0.85
    assert abs(grouped.loc["auroc", "score"] - 0.5) < 0.2  # chance, give or take CV's spread
    assert ungrouped.loc["auroc", "low"] > grouped.loc["auroc", "high"]
    assert grouped.n_groups.eq(80).all() and ungrouped.n_groups.eq(240).all()
    assert grouped[["control", "control_low", "control_high", "selectivity"]].isna().all().all()


def test_intervals_resample_images_not_samples():
    """Each sample copied four times within its image: four times the samples, the same images,
    so the interval keeps its width (resampling samples would halve it)."""
    rng = np.random.default_rng(7)
    labels = rng.random(80) < 0.5
    features = rng.normal(size=(80, 1, 8))
    features[:, 0, 0] += 1.2 * labels
    once = layer_probes(features, labels, np.arange(80), n_boot=400, control=None)
    copied = layer_probes(
        np.repeat(features, 4, axis=0),
        np.repeat(labels, 4),
        np.repeat(np.arange(80), 4),
        n_boot=400,
        control=None,
    )
    for metric in ("auroc", "accuracy"):
        a = once[once.metric == metric].iloc[0]
        b = copied[copied.metric == metric].iloc[0]
        assert b.n == 4 * a.n and b.n_groups == a.n_groups == 80
        assert 0.7 < (b.high - b.low) / (a.high - a.low) < 1.4


def test_deterministic_given_seed_and_layer_numbers():
    features, labels, groups = _planted(seed=3, n_images=40, n_layers=2, shift=2.0)
    kwargs = {"layers": [10, 20], "n_boot": 100, "Cs": (0.1, 1.0)}
    first = layer_probes(features, labels, groups, seed=4, **kwargs)
    assert first.equals(layer_probes(features, labels, groups, seed=4, **kwargs))
    assert sorted(set(first.layer)) == [10, 20]
    assert not first.equals(layer_probes(features, labels, groups, seed=5, **kwargs))


def test_bad_input_is_refused():
    features, labels, groups = _planted(n_images=30, n_layers=2)
    with pytest.raises(ConfigError, match=r"one class only \(\[True\]\)"):
        layer_probes(features, np.ones(len(labels), bool), groups)
    with pytest.raises(ConfigError, match="3 distinct groups"):
        grouped_folds(labels[:6], np.array([0, 0, 1, 1, 2, 2]), n_folds=5)
    broken = features.copy()
    broken[2, 1, 3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        layer_probes(broken, labels, groups)
    with pytest.raises(ConfigError, match=f"{len(labels)} samples.*\\({len(labels) - 1},\\)"):
        layer_probes(features, labels[:-1], groups)
    with pytest.raises(ConfigError, match=r"shape \(.*, 16\)"):
        layer_probes(features[:, 0], labels, groups)
    with pytest.raises(ConfigError, match="values"):
        layer_probes(features, labels + 1, groups)
    with pytest.raises(ConfigError, match="3 layer numbers for 2"):
        layer_probes(features, labels, groups, layers=[0, 1, 2])
    with pytest.raises(ConfigError, match="lengths|same length"):
        grouped_folds(labels, groups[:-1])


def test_plot_has_one_axes_by_layer(planted_table):
    for metric in ("auroc", "accuracy"):
        figure = plot_layer_probes(planted_table, metric=metric)
        assert isinstance(figure, Figure)
        (axis,) = figure.axes
        assert "layer" in axis.get_xlabel()
        assert axis.get_legend() is not None
    with pytest.raises(ConfigError, match="f1"):
        plot_layer_probes(planted_table, metric="f1")
