"""Lists of images and prompts run as one left-padded batch and equal one-at-a-time runs."""

import numpy as np
import pytest
import torch

import mmlens
from mmlens.errors import ConfigError, PromptError
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

PROMPTS = [
    "please describe this image in detail .",
    "what colour is the circle ?",
    "how many objects are there ?",
]


@pytest.fixture(scope="module")
def shapes():
    return mmlens.load("mmlens/shapes")


@pytest.fixture(scope="module")
def scenes():
    one = Scene((SceneObject("circle", "red", "large", "left"),))
    two = Scene(
        (
            SceneObject("circle", "blue", "small", "left"),
            SceneObject("cross", "green", "large", "right"),
        )
    )
    return [draw_scene(one), draw_scene(two), draw_scene(two)]


def _assert_same_trace(batched, alone):
    assert batched.token_ids.tolist() == alone.token_ids.tolist()
    assert batched.prompt_ids == alone.prompt_ids and batched.image_span == alone.image_span
    assert batched.prompt_text == alone.prompt_text
    for name in ("logprob", "entropy", "jsd", "paper_jsd", "topk_probs"):
        np.testing.assert_allclose(
            getattr(batched, name), getattr(alone, name), atol=2e-5, err_msg=name
        )
    assert (batched.topk_ids == alone.topk_ids).mean() > 0.99  # ties may swap


def test_trace_batch_equals_single_traces(shapes, scenes):
    batch = shapes.trace(scenes, PROMPTS, max_new_tokens=30, progress=False)
    alone = [
        shapes.trace(i, p, max_new_tokens=30, progress=False)
        for i, p in zip(scenes, PROMPTS, strict=True)
    ]
    lengths = [t.n_steps for t in alone]
    assert len(set(lengths)) > 1 and min(lengths) < 30  # rows stop at their own end of sequence
    for batched, single in zip(batch, alone, strict=True):
        _assert_same_trace(batched, single)


def test_one_image_for_every_prompt(shapes, scenes):
    traces = shapes.trace(scenes[1], PROMPTS[1:], max_new_tokens=3, progress=False)
    assert [t.settings["has_image"] for t in traces] == [True, True]
    alone = shapes.trace(scenes[1], PROMPTS[2], max_new_tokens=3, progress=False)
    assert traces[1].token_ids.tolist() == alone.token_ids.tolist()


def test_generate_batch_with_and_without_images(tiny, photo):
    prompts = ["describe this image .", "a much longer prompt with several more words in it ."]
    images = [photo, None]
    batch = tiny.generate(images, prompts, max_new_tokens=6)
    alone = [tiny.generate(i, p, max_new_tokens=6) for i, p in zip(images, prompts, strict=True)]
    assert [g.token_ids for g in batch] == [g.token_ids for g in alone]


def test_prepare_pads_left_with_per_row_masks_and_positions(tiny, photo):
    inputs = tiny.prepare([None, photo], ["short .", "a longer prompt ."])
    single = [tiny.prepare(None, "short ."), tiny.prepare(photo, "a longer prompt .")]
    width = inputs.n_positions
    pad = width - single[0].n_positions
    assert inputs.attention_mask[0, :pad].sum() == 0 and inputs.attention_mask[1].all()
    assert torch.equal(inputs.input_ids[0, pad:], single[0].input_ids[0])
    assert not inputs.image_mask[0].any()
    assert torch.equal(inputs.image_mask[1], single[1].image_mask[0])
    assert inputs.position_ids[0, pad:].tolist() == list(range(single[0].n_positions))
    assert inputs.row_texts == (single[0].text, single[1].text)


def test_forward_on_a_batch_equals_rows_alone(tiny, photo):
    prompts = ["describe it .", "what is in the picture , please tell me ?"]
    logits = tiny([photo, photo], prompts)
    for row, prompt in enumerate(prompts):
        alone = tiny(photo, prompt)
        torch.testing.assert_close(logits[row, -1], alone[0, -1], atol=1e-5, rtol=1e-5)


def test_run_with_cache_and_hooks_take_batches(tiny, photo):
    prompts = ["describe it .", "a longer text only prompt , with more words ."]
    logits, cache = tiny.run_with_cache([photo, None], prompts)
    assert cache["blocks.0.hook_resid_post"].shape[:2] == logits.shape[:2] == (2, logits.shape[1])
    for row, (image, prompt) in enumerate(zip([photo, None], prompts, strict=True)):
        torch.testing.assert_close(
            logits[row, -1], tiny(image, prompt)[0, -1], atol=1e-5, rtol=1e-5
        )
    hooked = tiny.run_with_hooks([photo, None], prompts, fwd_hooks=[])
    torch.testing.assert_close(hooked, logits)


def test_bad_batches(tiny, photo):
    with pytest.raises(ConfigError, match="2 images for 3 prompts"):
        tiny.prepare([photo, photo], ["a", "b", "c"])
    # A list of images with one prompt feeds them all to it: the prompt marks each.
    with pytest.raises(PromptError, match="0 times for 2 image"):
        tiny.prepare([photo, photo], "a")
    with pytest.raises(ConfigError, match="holds None"):
        tiny.prepare([photo, None], "<image> <image>")
