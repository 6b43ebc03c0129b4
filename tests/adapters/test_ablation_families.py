"""Ablating image tokens (zero, mean, patch) equals editing the image features in plain
`transformers`, for every family: the reference edits, independently of mmlens, the features
Hugging Face scatters into the sequence (feature row i goes to the i-th image position), and
generates greedily by re-running the whole sequence each step without a KV cache (mmlens edits
only the prefill and decodes from the cache)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from mmlens.ablation import HOOK, image_ablation_hooks
from mmlens.inputs import image_regions

PROMPT = "What is in the picture?"
N_NEW = 6


@pytest.fixture(scope="module")
def images():
    """Two images of one size (so equal token counts), for patching one with the other."""
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in "ab"]


@contextmanager
def _edit_features(case, edit: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """While open, HF's image features pass through `edit` ([n_img, d_model] in sequence order
    -> the same) where HF produces them: the projector output (LLaVA, original LLaVA, Gemma 3),
    the vision model's merged output, un-windowed (Qwen2.5-VL), or the packed per-image features
    with their newline tokens (LLaVA-NeXT)."""
    inner = case.hf.model
    if case.name == "llava_next":
        original = inner.get_image_features

        def packed(*args, **kwargs):
            out = original(*args, **kwargs)
            lengths = [len(features) for features in out.pooler_output]
            out.pooler_output = list(torch.split(edit(torch.cat(list(out.pooler_output))), lengths))
            return out

        inner.get_image_features = packed  # an instance attribute, over the method
        try:
            yield
        finally:
            del inner.get_image_features
        return
    if case.name == "qwen2_5_vl":

        def merged(module, args, out):
            out.pooler_output = edit(out.pooler_output)
            return out

        handle = inner.visual.register_forward_hook(merged)
    else:

        def projected(module, args, out):
            return edit(out.reshape(-1, out.shape[-1])).reshape(out.shape)

        handle = inner.multi_modal_projector.register_forward_hook(projected)
    try:
        yield
    finally:
        handle.remove()


def _reference_edit(rows: Tensor, mode: str, source: Tensor | None):
    def edit(features: Tensor) -> Tensor:
        edited = features.clone()
        if mode == "zero":
            edited[rows] = 0
        elif mode == "mean":
            edited[rows] = features.mean(dim=0)
        else:
            assert source is not None
            edited[rows] = source[rows].to(features.dtype)
        return edited

    return edit


def _hf_features(case, inputs) -> Tensor:
    grabbed: list[Tensor] = []

    def grab(features: Tensor) -> Tensor:
        grabbed.append(features.detach().clone())
        return features

    with torch.no_grad(), _edit_features(case, grab):
        case.hf(**case.hf_kwargs(inputs))
    return grabbed[0]


@pytest.mark.parametrize("mode", ["zero", "mean", "patch"])
def test_ablation_equals_editing_hf_image_features(case, images, mode):
    model = case.model
    inputs = model.prepare(images[0], PROMPT)
    image_positions = inputs.image_positions
    if inputs.patch_grid(0) is not None:
        region = image_regions(inputs, 2)["0,1"]
    else:  # LLaVA-NeXT's tiles and newline tokens: no single grid
        region = image_positions[: len(image_positions) // 2]
    assert 0 < len(region) < len(image_positions)
    # feature row i is the i-th image position
    rows = torch.searchsorted(image_positions, region)
    assert torch.equal(image_positions[rows], region)
    source = source_features = None
    if mode == "patch":
        other = model.prepare(images[1], PROMPT)
        assert torch.equal(other.image_mask, inputs.image_mask)
        with torch.no_grad():
            _, cache = model.run_with_cache(inputs=other)
        source = cache[HOOK][0]
        source_features = _hf_features(case, other)
        assert len(source_features) == len(image_positions)
    hooks = image_ablation_hooks(inputs, region, mode, source)
    edit = _reference_edit(rows, mode, source_features)

    with torch.no_grad():
        plain = model(inputs=inputs)
        ours = model.run_with_hooks(inputs=inputs, fwd_hooks=hooks)
        with _edit_features(case, edit):
            theirs = case.hf(**case.hf_kwargs(inputs)).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert (ours - plain).abs().max() > 1e-3  # the ablation changed something

    with model.hooks(fwd_hooks=hooks):
        generated = model.generate(
            inputs=inputs, max_new_tokens=N_NEW, stop_at_eos=False, verbose=False
        ).token_ids
    assert len(generated) == N_NEW
    new: list[int] = []
    with torch.no_grad(), _edit_features(case, edit):
        for _ in range(N_NEW):
            logits = case.hf(**case.hf_kwargs_with(inputs, new)).logits[0, -1]
            new.append(int(logits.argmax()))
    assert generated == new
