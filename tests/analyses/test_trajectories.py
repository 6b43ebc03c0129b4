"""Feature maps: PCA against numpy's SVD, seeded t-SNE, the paper's settings, planted structure."""

import warnings

import numpy as np
import pytest
from sklearn.manifold import TSNE
from sklearn.preprocessing import MaxAbsScaler

from mmlens.analyses.stages import layer_groups, trace_stages
from mmlens.analyses.trajectories import (
    embed_features,
    first_token_features,
    plot_trajectories,
    trace_trajectories,
)


def _diverging(n_items=6, n_layers=12, dim=40, seed=0):
    """Items start together and move apart along their own direction, layer by layer."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_items, dim))
    steps = np.arange(n_layers)[None, :, None]
    return steps * directions[:, None, :] + rng.normal(0, 0.05, (n_items, n_layers, dim))


def test_pca_matches_numpy_svd():
    features = _diverging()
    result = embed_features(features, method="pca")
    flat = features.reshape(-1, features.shape[-1])
    centred = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:2].T
    coords = result.frame[["x", "y"]].to_numpy()
    for k in range(2):  # components are defined up to sign
        assert np.allclose(np.abs(coords[:, k]), np.abs(reference[:, k]), atol=1e-8)
    assert result.trustworthiness > 0.9


def test_tsne_is_deterministic_and_keeps_neighbourhoods():
    features = _diverging()
    first = embed_features(features, seed=3)
    second = embed_features(features, seed=3)
    assert np.array_equal(first.frame[["x", "y"]], second.frame[["x", "y"]])
    assert 0.9 < first.trustworthiness <= 1.0
    assert first.frame.shape[0] == 6 * 12


def test_paper_mode_uses_the_authors_settings():
    features = _diverging(n_items=5, n_layers=13)
    result = embed_features(features, method="paper", layers=range(13))
    assert (result.frame.layer != 0).all() and len(result.frame) == 5 * 12
    data = MaxAbsScaler().fit_transform(features[:, 1:].reshape(-1, 40))
    reference = TSNE(
        n_components=2, perplexity=40, learning_rate=200, max_iter=2000, random_state=0
    ).fit_transform(data)
    np.testing.assert_allclose(result.frame[["x", "y"]].to_numpy(), reference)
    assert result.settings["perplexity"] == 40
    with pytest.raises(ValueError, match="perplexity"):
        embed_features(features[:2, :5], method="paper")


def test_maps_from_real_traces(tiny, photo, wide_photo, tmp_path):
    trace = tiny.trace(photo, "describe the image .", max_new_tokens=6, keep_features=True)
    stages = trace_stages(trace)
    result = trace_trajectories(trace, groups=layer_groups(trace, stages))
    assert set(result.frame.group) <= {"rapid evolution", "stabilization", "mutation", "output"}
    plot_trajectories(result).savefig(tmp_path / "tokens.png")
    traces = [
        tiny.trace(image, "what colour ?", max_new_tokens=1, keep_features=True)
        for image in (photo, wide_photo, np.flipud(photo).copy(), np.fliplr(wide_photo).copy())
    ]
    features = first_token_features(traces)
    assert features.shape == (4, tiny.n_blocks + 1, tiny.d_model)
    pca = embed_features(features, method="pca", kind="images")
    plot_trajectories(pca).savefig(tmp_path / "images.png")
    with pytest.raises(ValueError, match="keep_features"):
        first_token_features([tiny.trace(photo, "what ?", max_new_tokens=1)])
    np.testing.assert_array_equal(first_token_features([trace], step=5)[0], trace.features[5])
    with pytest.raises(ValueError, match="no step 6"):
        first_token_features([trace], step=6)


def test_paper_method_warns_on_a_trace_without_the_paper_lens(tiny, photo):
    normed = tiny.trace(photo, "describe the image .", max_new_tokens=6, keep_features=True)
    with pytest.warns(UserWarning, match="final-normed"):
        trace_trajectories(normed, method="paper", perplexity=5.0)
    paper = tiny.trace(
        photo, "describe the image .", max_new_tokens=6, keep_features=True, lens="paper"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = trace_trajectories(paper, method="paper", perplexity=5.0)
    assert 0 not in set(result.frame.layer)  # the embedding output is dropped, as theirs
