"""Activation patching with a clean and a corrupted image, against planted certainties."""

import numpy as np
import pytest
import torch

from mmlens.analyses.patching import (
    head_patching,
    image_regions,
    logit_difference,
    region_patching,
    residual_patching,
)
from mmlens.errors import ConfigError
from mmlens.tokens import ImageTokens
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


def test_head_patching_equals_transformer_lens_on_image_tokens(pair):
    from transformer_lens import patching as tl_patching

    model, clean, corrupted = pair
    metric = logit_difference(model, "red", "blue")
    ours = head_patching(model, clean, corrupted, metric, blocks=list(range(model.n_blocks)))
    assert len(ours) == model.n_blocks * model.cfg.n_heads
    tokens = {name: ImageTokens.wrap(inputs) for name, inputs in (("c", clean), ("x", corrupted))}
    _, cache = model.run_with_cache(tokens["c"])
    theirs = tl_patching.get_act_patch_attn_head_out_all_pos(
        model, tokens["x"], cache, lambda logits: torch.as_tensor(metric(logits))
    )
    for row in ours.itertuples():
        assert theirs[row.block, row.head].item() == pytest.approx(row.metric, abs=1e-4)
    with pytest.raises(ConfigError, match="blocks 0.."):
        head_patching(model, clean, corrupted, metric, blocks=[model.n_blocks])


def test_regions_partition_the_image_and_one_region_is_the_whole_image(pair):
    model, clean, corrupted = pair
    regions = image_regions(clean, per_side=3)
    found = torch.cat(list(regions.values()))
    assert sorted(found.tolist()) == clean.image_positions.tolist()  # disjoint and complete
    assert [len(v) for v in regions.values()] == [9, 6, 9, 6, 4, 6, 9, 6, 9]  # 8 = 3 + 2 + 3
    metric = logit_difference(model, "red", "blue")
    whole = region_patching(model, clean, corrupted, metric, per_side=1).set_index("block")
    image = residual_patching(model, clean, corrupted, metric, groups=("image",))
    np.testing.assert_allclose(whole.metric.to_numpy(), image.metric.to_numpy(), atol=1e-5)
    quarters = region_patching(model, clean, corrupted, metric, per_side=2)
    assert set(quarters.region) == {"0,0", "0,1", "1,0", "1,1"}
    with pytest.raises(ConfigError, match="per_side"):
        image_regions(clean, per_side=9)


def test_the_metric_reads_any_position_and_row(pair):
    model, clean, _ = pair
    logits = model(inputs=clean)
    two = torch.cat([logits, logits.flip(1)])
    metric = logit_difference(model, "red", "blue", position=0, row=1)
    red, blue = model.to_single_token("red"), model.to_single_token("blue")
    assert metric(two) == pytest.approx(float(logits[0, -1, red] - logits[0, -1, blue]))
