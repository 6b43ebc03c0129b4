"""Per-word layer signals: the clustered AUROC equals scikit-learn's on the data, each signal
reads its planted layer, and a real run's recorded per-layer values equal an independent
recomputation from the trace's residuals."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from _support import planted_token_rows
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.intervals import clustered_auroc
from mmlens.analyses.signals import SIGNALS, signal_separation, word_signals
from mmlens.benchmarks.shapes import read_shapes, write_shapes_benchmark
from mmlens.errors import TraceFormatError
from mmlens.runs import RunSettings, RunStore, run_items
from mmlens.zoo.shapes.scenes import SHAPES


def test_clustered_auroc_equals_scikit_learn_with_an_interval():
    rng = np.random.default_rng(0)
    positive = rng.random(80) < 0.3
    scores = rng.normal(size=80) + positive * 0.8
    scores[:10] = np.round(scores[:10])  # ties count a half
    clusters = np.repeat(np.arange(20), 4)
    found = clustered_auroc(scores, positive, clusters, n_resamples=500)
    assert found.estimate == pytest.approx(roc_auc_score(positive, scores))
    assert found.low <= found.estimate <= found.high
    assert found.n == (positive.sum(), 80 - positive.sum())
    alone = clustered_auroc(scores[~positive], positive[~positive], clusters[~positive])
    assert np.isnan(alone.estimate)


def _word_rows(order, step, token, final_jsd, candidate, attention):
    rows = planted_token_rows(order, step, token)
    rows["logprob"] = np.log(np.linspace(0.1, 0.9, 9))
    rows["final_jsd"] = final_jsd
    rows["candidate_prob"] = candidate
    rows["image_attention"] = attention
    return rows


def test_each_signal_reads_its_planted_layers():
    items = pd.DataFrame(
        [(0, 5, "generative", "ok", json.dumps(["dog"]), "a dog and a cat .")],
        columns=["order", "id", "task", "status", "truth", "output"],
    )
    jsd = np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.5, 0.05, 0.0])  # premature (4 or 6): 6
    candidate = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.2, 0.7, 0.3, 0.5])  # band 5..7: 6
    attention = np.r_[np.nan, np.arange(1, 9) / 10]  # band 2..5: 0.2 + 0.3 + 0.4 + 0.5
    tokens = pd.concat(
        [
            _word_rows(0, 0, "a", 0, 0, 0),
            _word_rows(0, 1, "dog", jsd, candidate, attention),
            _word_rows(0, 2, "and", 0, 0, 0),
            _word_rows(0, 3, "a", 0, 0, 0),
            _word_rows(0, 4, "cat", jsd / 2, candidate / 2, attention / 2),
            _word_rows(0, 5, ".", 0, 0, 0),
        ],
        ignore_index=True,
    )
    signals = word_signals(items, tokens, ObjectVocabulary.from_words(["dog", "cat"]))
    dog = signals.set_index("word").loc["dog"]
    assert dog.dola_layer == 6 and dog.dola_jsd == pytest.approx(0.5)
    assert dog.dola_contrast == pytest.approx(np.log(0.9) - np.log(0.7))
    assert dog.deco_layer == 6 and dog.deco_conf == pytest.approx(0.7)
    assert dog.svar == pytest.approx(1.4)
    assert not dog.hallucinated and signals.set_index("word").loc["cat"].hallucinated
    table = signal_separation(signals, n_resamples=200).set_index("signal")
    assert table.loc["svar", "auroc"] == 0  # the hallucinated cat attends less: 0.7 < 1.4
    assert table.loc["deco_conf", "n_hallucinated"] == 1
    with pytest.raises(TraceFormatError, match="word_signals"):
        signal_separation(pd.DataFrame({"x": [1]}))


def test_a_real_run_records_signals_equal_to_a_recomputation(shapes_model, tmp_path):
    bench = write_shapes_benchmark(tmp_path / "bench", n_scenes=8)
    items = [item for item in read_shapes(bench) if item.task == "generative"]
    store = RunStore.open(tmp_path / "run", {"test": 1})
    settings = RunSettings(max_new_tokens=24, visual_attention=True, batch_size=4)
    run_items(shapes_model, items, store, settings, progress=False)
    table, tokens = store.merge()
    signals = word_signals(table, tokens, ObjectVocabulary.from_words(SHAPES))
    separation = signal_separation(signals, n_resamples=300)
    assert list(separation.signal) == list(SIGNALS)
    assert separation.note.eq("").all(), separation
    assert ((separation.low <= separation.auroc) & (separation.auroc <= separation.high)).all()
    # The recorded final_jsd and candidate_prob, against scipy on the trace's own residuals.
    first = items[0]
    trace = shapes_model.trace(
        first.image, first.prompt, max_new_tokens=24, keep_features=True, progress=False
    )
    norm, unembed = shapes_model.adapter.final_norm(), shapes_model.adapter.unembed()
    with torch.no_grad():
        probs = torch.softmax(unembed(norm(torch.from_numpy(trace.features[0]))).double(), -1)
    probs = probs.numpy()
    expected = [jensenshannon(layer, probs[-1]) ** 2 for layer in probs]
    np.testing.assert_allclose(trace.final_jsd[0], expected, atol=1e-6)
    order = np.argsort(-probs[-1])[:20]
    keep = order[: int(np.searchsorted(np.cumsum(probs[-1][order]), 0.9)) + 1]
    np.testing.assert_allclose(trace.candidate_prob[0], probs[:, keep].max(1), rtol=1e-5)
    recorded = tokens[(tokens.order == 0) & (tokens.step == 0)].sort_values("layer")
    np.testing.assert_allclose(recorded.final_jsd, trace.final_jsd[0], atol=1e-6)
