"""Visual attention over traces and runs: the tidy table reads the trace's array, the run's
column is the traced mean over heads, and the hallucinated-vs-correct curves equal a plain
pandas computation on planted words, with intervals around them."""

import json

import numpy as np
import pandas as pd
import pytest

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.visual_attention import (
    plot_trace_visual_attention,
    plot_visual_attention_curves,
    trace_visual_attention,
    visual_attention_curves,
    word_visual_attention,
)
from mmlens.benchmarks.shapes import read_shapes, write_shapes_benchmark
from mmlens.errors import ConfigError, TraceFormatError
from mmlens.runs import RunSettings, RunStore, run_items
from mmlens.zoo.shapes.scenes import SHAPES


def test_the_trace_table_and_figure(shapes_model, tmp_path):
    items = read_shapes(write_shapes_benchmark(tmp_path / "bench", n_scenes=2)).items
    trace = shapes_model.trace(
        items[0].image, items[0].prompt, max_new_tokens=6, visual_attention=True, progress=False
    )
    table = trace_visual_attention(trace)
    heads = trace.image_attention.shape[-1]
    assert len(table) == trace.n_steps * (len(trace.layers) - 1) * heads
    row = table.iloc[heads + 1]  # step 0, the second recorded block, head 1
    assert row.share == trace.image_attention[0, 2, 1] and row.layer == trace.layers[2]
    assert ((table.share >= 0) & (table.share <= 1 + 1e-6)).all()
    plot_trace_visual_attention(trace).savefig(tmp_path / "trace.png")
    plain = shapes_model.trace(items[0].image, items[0].prompt, max_new_tokens=2, progress=False)
    with pytest.raises(TraceFormatError, match="visual_attention=True"):
        trace_visual_attention(plain)


def _planted_words():
    """Two items: hallucinated words attend less to the image in layer 2."""
    rows = []
    for order, word, hallucinated, shares in [
        (0, "cat", True, [0.5, 0.1]),
        (0, "dog", False, [0.5, 0.4]),
        (1, "sun", True, [0.3, 0.2]),
        (1, "car", False, [0.3, 0.6]),
        (1, "bus", False, [0.3, 0.5]),
    ]:
        for layer, share in zip([1, 2], shares, strict=True):
            rows.append((order, word, hallucinated, layer, share))
    return pd.DataFrame(rows, columns=["order", "word", "hallucinated", "layer", "image_attention"])


def test_curves_equal_plain_means_with_intervals_around_them(tmp_path):
    words = _planted_words()
    curves = visual_attention_curves(words, n_resamples=500).set_index(["layer", "group"])
    expected = words.groupby(["layer", "hallucinated"]).image_attention.mean()
    for layer in (1, 2):
        assert curves.loc[(layer, "hallucinated"), "mean"] == pytest.approx(expected[layer, True])
        assert curves.loc[(layer, "correct"), "mean"] == pytest.approx(expected[layer, False])
        difference = expected[layer, True] - expected[layer, False]
        assert curves.loc[(layer, "difference"), "mean"] == pytest.approx(difference)
    assert curves.loc[(2, "hallucinated"), "n_words"] == 2
    assert curves.loc[(2, "correct"), "n_items"] == 2
    assert (curves.low <= curves["mean"] + 1e-12).all()
    assert (curves["mean"] <= curves.high + 1e-12).all()
    plot_visual_attention_curves(curves.reset_index()).savefig(tmp_path / "curves.png")
    with pytest.raises(ConfigError, match="No judged"):
        visual_attention_curves(words.iloc[:0])


def test_a_real_run_records_the_traced_shares(shapes_model, tmp_path):
    bench = write_shapes_benchmark(tmp_path / "bench", n_scenes=6)
    items = [item for item in read_shapes(bench) if item.task == "generative"][:4]
    store = RunStore.open(tmp_path / "run", {"test": 1})
    settings = RunSettings(max_new_tokens=20, visual_attention=True, batch_size=2)
    run_items(shapes_model, items, store, settings, progress=False)
    table, tokens = store.merge()
    first = items[0]
    trace = shapes_model.trace(
        first.image, first.prompt, max_new_tokens=20, visual_attention=True, progress=False
    )
    mine = tokens[tokens.order == 0].sort_values(["step", "layer"])
    np.testing.assert_allclose(
        mine.image_attention.to_numpy(), trace.image_attention.mean(-1).ravel(), atol=1e-5
    )
    words = word_visual_attention(table, tokens, ObjectVocabulary.from_words(SHAPES))
    assert set(words.layer) == set(range(1, shapes_model.n_blocks + 1))
    assert words.image_attention.notna().all()
    assert len(words) % shapes_model.n_blocks == 0 and json.loads(table.truth.iloc[0])
    with pytest.raises(TraceFormatError, match="--visual-attention"):
        word_visual_attention(table, tokens.drop(columns="image_attention"), None)
