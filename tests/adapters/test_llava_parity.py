"""The LLaVA adapter equals Hugging Face `transformers` (float32, eager attention)."""

import pytest
import torch
from _support import SPECS, assert_every_layer_equals_hf, load_hf

import mmlens

PROMPT = "describe this image in detail ."
ATOL = 1e-5


@pytest.fixture(scope="module")
def pair(checkpoint, config_name):
    return mmlens.load(checkpoint), load_hf(checkpoint), config_name


def test_prepare_matches_hf_processor(pair, wide_photo):
    model, _, _ = pair
    from PIL import Image

    inputs = model.prepare(wide_photo, PROMPT, image_mode="processor")
    expected = model.adapter.processor(
        images=Image.fromarray(wide_photo), text=inputs.text, return_tensors="pt"
    )
    assert torch.equal(inputs.input_ids, expected["input_ids"])
    assert torch.equal(inputs.pixel_values, expected["pixel_values"])


def test_image_mask_marks_every_image_token(pair, photo):
    model, _, name = pair
    inputs = model.prepare(photo, PROMPT)
    n_img = SPECS[name].n_image_tokens
    assert int(inputs.image_mask.sum()) == n_img
    start, end = inputs.image_span
    assert end - start == n_img
    assert (inputs.input_ids[0, start:end] == model.adapter.image_token_id).all()


def test_logits_and_hidden_states_match_hf(pair, photo):
    model, hf, _ = pair
    inputs = model.prepare(photo, PROMPT)
    reference = hf(**inputs.model_kwargs(), output_hidden_states=True)
    logits, cache = model.run_with_cache(inputs=inputs)
    torch.testing.assert_close(logits, reference.logits, atol=ATOL, rtol=0)
    assert_every_layer_equals_hf(model, cache, reference.hidden_states, atol=ATOL)


def test_vision_hooks_are_what_llava_feeds_the_projector(pair, photo):
    model, hf, name = pair
    spec = SPECS[name]
    inputs = model.prepare(photo, PROMPT)
    _, cache = model.run_with_cache(inputs=inputs)
    tower = hf.model.vision_tower(inputs.pixel_values, output_hidden_states=True)
    selected = tower.hidden_states[spec.vision_feature_layer]
    if spec.vision_feature_select_strategy == "default":
        selected = selected[:, 1:]
    torch.testing.assert_close(cache["hook_vision_out"], selected, atol=ATOL, rtol=0)
    image_embeds = hf.model.multi_modal_projector(selected)
    torch.testing.assert_close(cache["hook_image_embeds"], image_embeds, atol=ATOL, rtol=0)
    torch.testing.assert_close(cache["hook_pixel_values"], inputs.pixel_values)
    # The image embeddings are exactly what enters block 0 at the image positions.
    torch.testing.assert_close(
        cache.image_part("blocks.0.hook_resid_pre"), image_embeds, atol=ATOL, rtol=0
    )
    assert cache.text_part("blocks.0.hook_resid_pre").shape[1] == (
        inputs.n_positions - spec.n_image_tokens
    )
    # hook_embed holds the token embeddings before the image features are scattered in.
    torch.testing.assert_close(
        cache.text_part("hook_embed"), cache.text_part("blocks.0.hook_resid_pre")
    )
    image_token_embedding = hf.get_input_embeddings().weight[model.adapter.image_token_id]
    torch.testing.assert_close(
        cache.image_part("hook_embed"), image_token_embedding.expand_as(image_embeds)
    )


def test_greedy_generation_matches_hf_generate(pair, photo):
    model, hf, _ = pair
    inputs = model.prepare(photo, PROMPT)
    expected = hf.generate(**inputs.model_kwargs(), max_new_tokens=20, do_sample=False)
    ours = model.generate(inputs=inputs, max_new_tokens=20)
    assert ours.token_ids == expected[0, inputs.n_positions :].tolist()
    assert len(ours.token_ids) >= 2


def test_text_only_matches_hf(pair):
    model, hf, _ = pair
    inputs = model.prepare(None, PROMPT)
    assert inputs.pixel_values is None and inputs.image_span is None
    logits = model(inputs=inputs)
    torch.testing.assert_close(logits, hf(**inputs.model_kwargs()).logits, atol=ATOL, rtol=0)
