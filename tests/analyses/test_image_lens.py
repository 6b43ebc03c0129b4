"""The image tokens through the lens equal the final norm and unembedding applied to Hugging
Face's hidden states at the image positions, on a square (LLaVA) and a non-square (Qwen2.5-VL)
patch grid."""

import numpy as np
import pytest
import torch
from _families import build_case
from _support import load_hf

from mmlens.analyses.image_lens import image_token_lens, plot_word_on_image
from mmlens.errors import ConfigError
from mmlens.words import first_token_id

PROMPT = "describe this image in detail ."


def _reference(case_model, hf_norm, hf_head, hidden_states, positions, layers, token):
    """P(token) and top-1 ids per layer at `positions`, from HF's hidden states (the last one is
    already final-normed there)."""
    probs, top = [], []
    last = len(hidden_states) - 1
    for layer in layers:
        states = hidden_states[layer][0, positions]
        normed = states if layer == last else hf_norm(states)
        logprobs = torch.log_softmax(hf_head(normed).float(), dim=-1)
        probs.append(logprobs[:, token].exp().numpy())
        top.append(logprobs.argmax(-1).numpy())
    return np.stack(probs), np.stack(top)


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_equals_norm_and_unembed_on_hf_hidden_states(
    family, tiny, checkpoints, wide_photo, tmp_path
):
    if family == "llava":
        model, hf = tiny, load_hf(checkpoints["gqa"])
        inputs = model.prepare(wide_photo, PROMPT)
        kwargs = inputs.model_kwargs()
    else:
        case = build_case(family, tmp_path)
        model, hf = case.model, case.hf
        inputs = model.prepare(wide_photo, PROMPT)
        kwargs = case.hf_kwargs(inputs)
    reference = hf(**kwargs, output_hidden_states=True)
    _, cache = model.run_with_cache(inputs=inputs)
    word = "image"
    lens = image_token_lens(model, cache, [word], top_k=2)
    grid = inputs.patch_grid(0)
    assert lens.grid == tuple(grid) and len(lens.positions) == grid[0] * grid[1]
    language_model = hf.model.language_model
    token = first_token_id(model.tokenizer, word)
    probs, top1 = _reference(
        model, language_model.norm, hf.lm_head, reference.hidden_states,
        torch.as_tensor(lens.positions), lens.layers, token,
    )  # fmt: skip
    np.testing.assert_allclose(lens.word_probs[word], probs, atol=1e-5)
    assert (lens.top_ids[..., 0] == top1).mean() > 0.99  # ties aside
    frame = lens.to_frame()
    assert len(frame) == len(lens.layers) * len(lens.positions)
    assert frame.patch_row.max() == grid[0] - 1 and frame.patch_col.max() == grid[1] - 1
    assert f"p_{word}" in frame


def test_layers_words_and_the_figure(tiny, photo, tmp_path):
    _, cache = tiny.run_with_cache(photo, PROMPT)
    lens = image_token_lens(tiny, cache, ["image", "detail"], layers=[0, 2, 4], top_k=3)
    assert list(lens.layers) == [0, 2, 4] and lens.top_probs.shape[-1] == 3
    assert (np.diff(lens.top_probs, axis=-1) <= 1e-7).all()  # sorted, most probable first
    figure = plot_word_on_image(lens, "detail")
    assert len(figure.axes) == 4  # three layers and the colour bar
    figure.savefig(tmp_path / "detail.png")
    scaled = plot_word_on_image(lens, "detail", vmax=1.0)
    assert scaled.axes[0].images[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ConfigError, match="vmax=0.0"):
        plot_word_on_image(lens, "detail", vmax=0.0)
    with pytest.raises(ConfigError, match="layers"):
        image_token_lens(tiny, cache, layers=[99])
    with pytest.raises(ConfigError, match="top_k"):
        image_token_lens(tiny, cache, top_k=0)
    with pytest.raises(ConfigError, match="not among the words"):
        plot_word_on_image(lens, "dog")
    with pytest.raises(ConfigError, match="were not computed"):
        plot_word_on_image(lens, "image", layers=[1])
