"""Probe tasks read from an activation store: object presence with the benchmark's labels, and
hallucinated object words found as `mmlens link` finds them."""

import json

import numpy as np
import pandas as pd
import pytest

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.link import object_mentions
from mmlens.analyses.probe_data import (
    hallucination_task,
    object_presence_task,
    residual_features,
    residual_layer,
)
from mmlens.benchmarks import read_shapes, write_shapes_benchmark
from mmlens.benchmarks.labels import object_labels
from mmlens.errors import ConfigError
from mmlens.runs import RunSettings, RunStore, run_items
from mmlens.runs.activation_store import ActivationStore, collect_activations
from mmlens.runs.activations import ActivationSettings
from mmlens.zoo.shapes.scenes import SHAPES

HOOKS = ("blocks.0.hook_resid_pre", "blocks.3.hook_resid_post", "blocks.7.hook_resid_post")


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    bench = write_shapes_benchmark(tmp_path_factory.mktemp("bench") / "shapes", n_scenes=16)
    return [item for item in read_shapes(bench).items if item.task == "generative"]


@pytest.fixture
def model(shapes_model):
    return shapes_model


def test_residual_layers_are_numbered_as_hidden_states():
    assert residual_layer("blocks.0.hook_resid_pre") == 0
    assert residual_layer("blocks.3.hook_resid_post") == 4
    assert residual_layer("blocks.3.hook_out") == 4
    with pytest.raises(ConfigError, match="not a residual-stream hook"):
        residual_layer("blocks.3.attn.hook_z")


def test_object_presence_reads_the_benchmark_labels(model, captions, tmp_path):
    settings = ActivationSettings(HOOKS, ("image_mean", "last"), batch_size=4)
    collect_activations(model, captions, tmp_path / "a", settings, progress=False)
    store = ActivationStore(tmp_path / "a")
    task = object_presence_task(store, "Triangle", "last")
    labels = object_labels(store.items)
    expected = labels[labels.object == "triangle"].set_index("id").loc[task.ids]
    assert task.features.shape == (len(task.ids), 3, model.d_model)
    assert task.layers == [0, 4, 8]
    assert task.labels.tolist() == expected.present.tolist()
    assert task.groups.tolist() == expected.image.tolist()
    vectors, table = store.vectors("blocks.3.hook_resid_post", "last")
    np.testing.assert_array_equal(task.features[:, 1], vectors[np.isin(table.id, task.ids)])
    assert residual_features(store, "image_mean")[0].shape == (len(captions), 3, model.d_model)
    with pytest.raises(ConfigError, match="holds no 'blocks.0.hook_resid_pre' at 'image'"):
        residual_features(store, "image")
    with pytest.raises(ConfigError, match="no item says whether 'zebra'"):
        object_presence_task(store, "zebra", "last")


def test_hallucinated_words_are_the_links_words(model, captions, tmp_path):
    """The same captions traced by `mmlens run` and judged by `object_mentions` with the same
    vocabulary give the same (item, first step, hallucinated) words, wherever the store has a
    vector (a word starting at a caption's last token has none)."""
    settings = ActivationSettings(HOOKS, ("generated",), max_new_tokens=24)
    collect_activations(model, captions, tmp_path / "a", settings, progress=False)
    store = ActivationStore(tmp_path / "a")
    vocabulary = ObjectVocabulary.from_words(SHAPES)
    task = hallucination_task(store, vocabulary)
    run = RunStore.open(tmp_path / "run", {"benchmark": "shapes"})
    run_items(model, captions, run, RunSettings(max_new_tokens=24), progress=False)
    items, tokens = run.merge()
    mentions = object_mentions(items, tokens, vocabulary)
    lengths = items.set_index("id").n_tokens
    placed = mentions[mentions.step < mentions.id.map(lengths) - 1]
    assert task.labels.any() and not task.labels.all()  # both kinds occur on this model
    _, table = store.vectors("blocks.3.hook_resid_post", "generated")
    steps = table.set_index(["id", "within"])
    ours = sorted(zip(task.ids.tolist(), task.labels.tolist(), strict=True))
    assert ours == sorted(zip(placed.id.tolist(), placed.hallucinated.tolist(), strict=True))
    with pytest.raises(ConfigError, match="several vectors per item"):
        residual_features(store, "generated")
    first_tokens = tokens[tokens.layer == 0].set_index(["id", "step"]).token_id
    for item_id, step in zip(placed.id, placed.step, strict=True):
        assert steps.loc[(item_id, step), "token_id"] == first_tokens.loc[(item_id, step)]
    assert pd.Series(task.groups).map(lambda image: image.endswith(".png")).all()
    assert json.loads(store.items.truth.iloc[0])  # captions carry their objects
