"""LVLM vs LLM comparison on planted traces and on the tiny model with and without the image."""

import numpy as np
from _support import staged_logprobs, trace_from_logprobs

from mmlens.analyses.compare_llm import (
    image_and_text_traces,
    jsd_profiles,
    plot_comparison,
    stage_comparison,
)


def test_planted_stages_show_up_only_where_planted():
    staged = trace_from_logprobs(staged_logprobs(n_steps=6, critical=18, mutation=(30,)))
    # "text only" stand-in: the same distribution from the start, so no stages at all
    flat = trace_from_logprobs(staged_logprobs(n_steps=6, critical=0, seed=5))
    table = stage_comparison(staged, flat)
    assert table.loc["median critical layer", "image"] == 18
    assert table.loc["with critical layer", "text only"] == 0.0
    assert np.isnan(table.loc["median critical layer", "text only"])
    assert table.loc["with mutation", "image"] == 1.0
    assert table.loc["with mutation", "text only"] == 0.0
    profiles = jsd_profiles(staged, flat)
    image = profiles[profiles.input == "image"].set_index("layer").mean_jsd
    np.testing.assert_allclose(image.to_numpy(), staged.jsd[:, :-1].mean(axis=0))
    assert image.loc[:16].min() > image.loc[18:28].max()


def test_with_the_tiny_model(tiny, photo, tmp_path):
    with_image, text_only = image_and_text_traces(
        tiny, photo, "describe the image .", max_new_tokens=4
    )
    assert with_image.image_span is not None and text_only.image_span is None
    assert stage_comparison(with_image, text_only).shape == (5, 2)
    plot_comparison(with_image, text_only).savefig(tmp_path / "compare.png")
