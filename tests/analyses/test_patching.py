"""Activation patching with a clean and a corrupted image, against planted certainties."""

import numpy as np
import pytest

from mmlens.analyses.patching import logit_difference, residual_patching
from mmlens.errors import ConfigError
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

QUESTION = "what colour is the circle ?"


@pytest.fixture(scope="module")
def pair():
    import mmlens

    model = mmlens.load("mmlens/shapes")
    clean = model.prepare(
        draw_scene(Scene((SceneObject("circle", "red", "large", "left"),))), QUESTION
    )
    corrupted = model.prepare(
        draw_scene(Scene((SceneObject("circle", "blue", "large", "left"),))), QUESTION
    )
    return model, clean, corrupted


def test_patching_recovers_where_it_must(pair):
    model, clean, corrupted = pair
    metric = logit_difference(model, "red", "blue")
    assert metric(model(inputs=clean)) > 0 > metric(model(inputs=corrupted))
    pre = residual_patching(model, clean, corrupted, metric).set_index(["block", "group"])
    # Before block 0 the runs differ only at the image tokens.
    assert pre.loc[(0, "image"), "normalized"] == pytest.approx(1.0, abs=1e-5)
    assert pre.loc[(0, "text"), "normalized"] == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(pre.xs("all", level="group").normalized, 1.0, atol=1e-5)
    post = residual_patching(
        model, clean, corrupted, metric, hook="resid_post", groups=("text",)
    ).set_index("block")
    # After the last block only the last (text) position feeds the logits.
    assert post.loc[model.n_blocks - 1, "normalized"] == pytest.approx(1.0, abs=1e-5)


def test_mismatched_inputs_are_refused(pair):
    model, clean, _ = pair
    other = model.prepare(None, QUESTION)
    with pytest.raises(ConfigError, match="same length"):
        residual_patching(model, clean, other, lambda logits: 0.0)
