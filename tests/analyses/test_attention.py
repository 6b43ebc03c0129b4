"""Attention views over image and text: patch-named labels, and per-head image grids that add up
to the pattern they come from."""

import numpy as np
import pytest

from mmlens.analyses.attention import attention_page, image_attention, plot_image_attention
from mmlens.errors import ConfigError
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene


def test_views_on_a_batch_row(shapes_model, tmp_path):
    model = shapes_model
    image = draw_scene(Scene((SceneObject("circle", "red", "large", "left"),)))
    prompts = ["what colour is the circle ?", "what is it ?"]
    _, cache = model.run_with_cache([image, image], prompts, names_filter=lambda n: "pattern" in n)
    page = attention_page(model, cache, block=3, row=1)  # row 1 is left-padded
    assert "<image 0,0>" in page and "<image 7,7>" in page and "<pad>" not in page
    table = image_attention(cache, block=3, row=0)
    pattern = cache["blocks.3.attn.hook_pattern"][0, :, -1].detach().numpy()
    image_positions = np.flatnonzero(cache.inputs.image_mask[0].numpy())
    assert len(table) == model.cfg.n_heads * 64
    for head, part in table.groupby("head"):
        grid = part.sort_values(["patch_row", "patch_col"]).attention.to_numpy()
        np.testing.assert_allclose(grid, pattern[head, image_positions], atol=1e-6)
        assert part.head_to_image.iloc[0] + part.head_to_text.iloc[0] == pytest.approx(1, abs=1e-5)
    plot_image_attention(cache, block=3).savefig(tmp_path / "attention.png")
    _, text_only = model.run_with_cache(None, "what is it ?")
    with pytest.raises(ConfigError, match="image positions"):
        image_attention(text_only, block=0)
    with pytest.raises(ConfigError, match="no blocks.0.attn.hook_pattern"):
        image_attention(model.run_with_cache(image, "x", names_filter=lambda n: False)[1], 0)
