"""Visual attention recorded by `trace` equals the shares computed from Hugging Face's
`output_attentions` (HF re-running the whole sequence each step, no KV cache) for every family,
per step, block and head, and per patch-grid region; batches, skipped blocks and saving keep it."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.errors import ConfigError
from mmlens.inputs import image_regions
from mmlens.trace import Trace

PROMPT = "What is in the picture?"


def _hf_attentions(case, inputs, new_ids):
    """HF's attention patterns of the last position, per step: [step][block] -> [head, key]."""
    steps = []
    with torch.no_grad():
        for step in range(len(new_ids)):
            out = case.hf(**case.hf_kwargs_with(inputs, new_ids[:step]), output_attentions=True)
            steps.append([layer[0, :, -1] for layer in out.attentions])
    return steps


def test_image_shares_equal_hf_output_attentions(case, image):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    trace = model.trace(image, PROMPT, max_new_tokens=4, visual_attention=True, progress=False)
    assert trace.image_attention.shape == (trace.n_steps, model.n_blocks + 1, _heads(model))
    assert np.isnan(trace.image_attention[:, 0]).all()
    image_positions = inputs.image_positions
    reference = _hf_attentions(case, inputs, trace.token_ids.tolist())
    for step, blocks in enumerate(reference):
        for block, pattern in enumerate(blocks):
            expected = pattern[:, image_positions].sum(-1).numpy()
            np.testing.assert_allclose(
                trace.image_attention[step, block + 1], expected, atol=1e-5, err_msg=f"{step=}"
            )
    assert trace.region_attention is None and "image_attention" in trace.to_frame()


def test_region_shares_equal_hf_and_add_up_to_the_image_share(case, image):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    if inputs.patch_grid(0) is None:  # LLaVA-NeXT's tiles: no single grid to split
        with pytest.raises(ConfigError, match="patch grid"):
            model.trace(image, PROMPT, max_new_tokens=2, attention_regions=2, progress=False)
        return
    trace = model.trace(image, PROMPT, max_new_tokens=3, attention_regions=2, progress=False)
    assert trace.settings["attention_regions"] == 2
    regions = list(image_regions(inputs, 2).values())
    reference = _hf_attentions(case, inputs, trace.token_ids.tolist())
    for step, blocks in enumerate(reference):
        for block, pattern in enumerate(blocks):
            expected = np.stack([pattern[:, r].sum(-1).numpy() for r in regions], axis=-1)
            np.testing.assert_allclose(trace.region_attention[step, block + 1], expected, atol=1e-5)
    np.testing.assert_allclose(
        trace.region_attention[:, 1:].sum(-1), trace.image_attention[:, 1:], atol=1e-5
    )


def _heads(model):
    return int(model.adapter.text_config().num_attention_heads)


def test_batches_skips_and_saving_keep_the_shares(case, image, tmp_path):
    model = case.model
    other = Image.fromarray(np.asarray(image)[:, ::-1].copy())
    prompts = [PROMPT, "Say what you see in it, in a few words."]
    kwargs = dict(max_new_tokens=3, visual_attention=True, progress=False)
    batch = model.trace([image, other], prompts, **kwargs)
    for row, (picture, prompt) in enumerate(zip([image, other], prompts, strict=True)):
        alone = model.trace(picture, prompt, **kwargs)
        steps = min(alone.n_steps, batch[row].n_steps)
        np.testing.assert_allclose(
            batch[row].image_attention[:steps], alone.image_attention[:steps], atol=1e-5
        )
    skipped = model.trace(image, PROMPT, skip_layers=[1], **kwargs)
    assert skipped.image_attention.shape[1] == len(skipped.layers) == model.n_blocks
    loaded = Trace.load(skipped.save(tmp_path / "trace"))
    np.testing.assert_array_equal(loaded.image_attention, skipped.image_attention)


def test_bad_settings(case, image):
    with pytest.raises(ConfigError, match="attention_regions=0"):
        case.model.trace(image, PROMPT, max_new_tokens=1, attention_regions=0, progress=False)
