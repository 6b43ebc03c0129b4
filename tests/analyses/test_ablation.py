"""Ablating image tokens equals editing the projector's output in plain `transformers` (zero,
mean and patch; a forward and a greedy generation), and the region sweep reads right."""

import numpy as np
import pytest
import torch
from _support import load_hf

from mmlens.ablation import image_ablation_hooks
from mmlens.analyses.ablation import plot_region_ablation, region_ablation
from mmlens.analyses.patching import image_regions
from mmlens.errors import ConfigError

PROMPT = "describe this image in detail ."


def _projector_edit(hf, indices, mode, source_features=None):
    """The reference: a hook on HF's projector output (the image features, scattered into the
    sequence in order) that edits feature rows `indices`."""

    def edit(module, args, output):
        edited = output.clone()
        flat = edited.reshape(-1, edited.shape[-1])
        if mode == "zero":
            flat[indices] = 0
        elif mode == "mean":
            flat[indices] = output.reshape(-1, output.shape[-1]).mean(dim=0)
        else:
            flat[indices] = source_features[indices]
        return flat.reshape(edited.shape)

    return hf.model.multi_modal_projector.register_forward_hook(edit)


@pytest.mark.parametrize("mode", ["zero", "mean", "patch"])
def test_equals_editing_the_projector_output_in_transformers(tiny, checkpoints, photo, mode):
    hf = load_hf(checkpoints["gqa"])
    inputs = tiny.prepare(photo, PROMPT)
    other = tiny.prepare(np.flipud(photo).copy(), PROMPT)
    region = image_regions(inputs, per_side=2)["0,1"]
    first = int(inputs.image_positions[0])
    source = source_features = None
    if mode == "patch":
        _, cache = tiny.run_with_cache(inputs=other)
        source = cache["blocks.0.hook_resid_pre"][0]
        grabbed = []

        def grab(module, args, output):
            grabbed.append(output.reshape(-1, output.shape[-1]).clone())

        handle = hf.model.multi_modal_projector.register_forward_hook(grab)
        hf(**other.model_kwargs())
        handle.remove()
        source_features = grabbed[0]
    hooks = image_ablation_hooks(inputs, region, mode, source)
    mine = tiny.run_with_hooks(inputs=inputs, fwd_hooks=hooks)
    handle = _projector_edit(hf, region - first, mode, source_features)
    try:
        reference = hf(**inputs.model_kwargs()).logits
        generated = hf.generate(**inputs.model_kwargs(), do_sample=False, max_new_tokens=8)
    finally:
        handle.remove()
    torch.testing.assert_close(mine, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(mine, tiny(inputs=inputs), atol=1e-4)  # it did change something
    with tiny.hooks(fwd_hooks=hooks):
        ours = tiny.generate(inputs=inputs, max_new_tokens=8, stop_at_eos=False)
    assert ours.token_ids == generated[0, inputs.n_positions :].tolist()[: len(ours.token_ids)]


def test_region_sweep_on_the_shipped_model(shapes_model, tmp_path):
    from mmlens.cli.single import demo_scene

    table = region_ablation(shapes_model, demo_scene(), PROMPT, "square", max_new_tokens=30)
    assert table.region.tolist() == ["none", "0,0", "0,1", "1,0", "1,1", "image"]
    assert table.change.iloc[0] == 0 and table.n_positions.iloc[-1] == 64
    assert table.n_positions.iloc[1:5].sum() == 64  # the regions tile the grid
    plain = shapes_model.generate(demo_scene(), PROMPT, max_new_tokens=30).text
    assert table.text.iloc[0] == plain and table.word_in_text.iloc[0]  # "... red square ..."
    assert table.text.iloc[-1] != plain  # without the image the caption changes
    plot_region_ablation(table).savefig(tmp_path / "ablation.png")


def test_bad_ablations_are_clear_errors(tiny, photo):
    inputs = tiny.prepare(photo, PROMPT)
    text_position = int(torch.nonzero(~inputs.image_mask[0])[0])
    with pytest.raises(ConfigError, match="not all image positions"):
        image_ablation_hooks(inputs, torch.tensor([text_position]))
    with pytest.raises(ConfigError, match="not all image positions"):
        image_ablation_hooks(inputs, torch.tensor([10_000]))
    with pytest.raises(ConfigError, match="No positions"):
        image_ablation_hooks(inputs, torch.tensor([], dtype=torch.long))
    with pytest.raises(ConfigError, match="mode="):
        image_ablation_hooks(inputs, inputs.image_positions, "blur")
    with pytest.raises(ConfigError, match="needs source"):
        image_ablation_hooks(inputs, inputs.image_positions, "patch")
    with pytest.raises(ConfigError, match="source has 3 positions"):
        image_ablation_hooks(inputs, inputs.image_positions, "patch", torch.zeros(3, 8))
    with pytest.raises(ConfigError, match="row=2"):
        image_ablation_hooks(inputs, inputs.image_positions, row=2)
    with pytest.raises(ConfigError, match="no token of its own"):
        region_ablation(tiny, photo, PROMPT, "zebra-unicorn-xyz")
