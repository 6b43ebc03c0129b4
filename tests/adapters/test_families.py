"""Every family's adapter equals Hugging Face `transformers` (tiny random float32 checkpoints,
eager attention): logits, hidden states, hooks, generation, traces, skipping and batches."""

import numpy as np
import pytest
import torch
from _families import FAMILIES, build_case
from _support import (
    assert_every_layer_equals_hf,
    hf_without_blocks,
    paper_code_divergence,
    reference_logprobs,
)
from scipy.spatial.distance import jensenshannon

PROMPT = "describe this image in detail ."
ATOL = 1e-5
STEPS = 12


@pytest.fixture(scope="module", params=FAMILIES)
def case(request, tmp_path_factory):
    return build_case(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def prepared(case, wide_photo):
    """A non-square photograph: tiles, unpadding and dynamic resolution all come into play."""
    return case.model.prepare(wide_photo, PROMPT)


def test_image_positions_come_from_the_input_ids(case, prepared):
    image_token_id = case.hf.config.image_token_id
    assert torch.equal(prepared.image_mask, prepared.input_ids == image_token_id)
    n_features = case.vision_reference(prepared).sequence.shape[0]
    assert int(prepared.image_mask.sum()) == n_features
    start, end = prepared.image_span
    assert end - start == n_features  # one contiguous run, newline tokens included


def test_logits_and_every_layer_equal_hf(case, prepared):
    reference = case.hf(**case.hf_kwargs(prepared), output_hidden_states=True)
    logits, cache = case.model.run_with_cache(inputs=prepared)
    torch.testing.assert_close(logits, reference.logits, atol=ATOL, rtol=0)
    assert_every_layer_equals_hf(case.model, cache, reference.hidden_states, atol=ATOL)


def test_text_only_equals_hf(case):
    inputs = case.model.prepare(None, PROMPT)
    assert inputs.pixel_values is None and inputs.image_span is None
    reference = case.hf(**case.hf_kwargs(inputs)).logits
    torch.testing.assert_close(case.model(inputs=inputs), reference, atol=ATOL, rtol=0)


def test_multimodal_hooks_hold_what_the_table_says(case, prepared):
    _, cache = case.model.run_with_cache(inputs=prepared)
    expected = case.vision_reference(prepared)
    torch.testing.assert_close(cache["hook_pixel_values"], expected.pixels)
    torch.testing.assert_close(cache["hook_vision_out"], expected.vision_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(cache["hook_image_embeds"], expected.image_embeds, atol=ATOL, rtol=0)
    # What enters block 0 at the image positions is the image features in sequence order.
    torch.testing.assert_close(
        cache.image_part("blocks.0.hook_resid_pre", row=0), expected.sequence, atol=ATOL, rtol=0
    )


def test_greedy_generation_equals_hf_generate(case, prepared):
    expected = case.hf.generate(**case.hf_kwargs(prepared), max_new_tokens=20, do_sample=False)
    ours = case.model.generate(inputs=prepared, max_new_tokens=20)
    assert ours.token_ids == expected[0, prepared.n_positions :].tolist()
    assert len(ours.token_ids) >= 2


def test_trace_equals_an_independent_computation_from_hf(case, prepared, wide_photo):
    out = case.hf.generate(
        **case.hf_kwargs(prepared),
        max_new_tokens=STEPS,
        do_sample=False,
        output_hidden_states=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    trace = case.model.trace(wide_photo, PROMPT, max_new_tokens=STEPS, progress=False)
    assert trace.token_ids.tolist() == out.sequences[0, prepared.n_positions :].tolist()
    reference = reference_logprobs(case.hf, out.hidden_states, "normed")
    steps = np.arange(trace.n_steps)
    np.testing.assert_allclose(
        trace.logprob, reference[steps, :, trace.token_ids], atol=1e-5, rtol=0
    )
    probs = np.exp(reference)
    expected_jsd = np.array(
        [[jensenshannon(p[i], p[i + 1]) ** 2 for i in range(len(p) - 1)] for p in probs]
    )
    np.testing.assert_allclose(trace.jsd[:, :-1], expected_jsd, atol=1e-6, rtol=0)
    paper = case.model.trace(wide_photo, PROMPT, max_new_tokens=STEPS, lens="paper", progress=False)
    paper_reference = reference_logprobs(case.hf, out.hidden_states, "paper")
    np.testing.assert_allclose(
        paper.paper_jsd[:, :-1],
        paper_code_divergence(paper_reference[:, :-1], paper_reference[:, 1:]),
        rtol=1e-4,
        atol=1e-12,
    )


@pytest.mark.parametrize("skip", [[1, 2], [0], [3]])
def test_skipping_equals_hf_with_layers_deleted(case, prepared, wide_photo, skip):
    reduced = hf_without_blocks(case.hf, skip)
    kwargs = case.hf_kwargs(prepared)
    if case.name == "qwen2_5_vl":
        reduced.model.rope_deltas = None
    expected = reduced.generate(**kwargs, max_new_tokens=16, do_sample=False)
    expected_ids = expected[0, prepared.n_positions :].tolist()
    ours = case.model.generate(inputs=prepared, max_new_tokens=16, skip_layers=skip)
    assert ours.token_ids == expected_ids
    trace = case.model.trace(
        wide_photo, PROMPT, max_new_tokens=16, skip_layers=skip, progress=False
    )
    assert trace.token_ids.tolist() == expected_ids


def test_a_batch_equals_each_row_alone(case, photo, wide_photo):
    """Rows of different lengths, image sizes (tiles, resolutions) and one without an image."""
    images = [wide_photo, None, photo]
    prompts = [PROMPT, "what colour ?", "describe"]
    if case.name in ("llava_next", "qwen2_5_vl"):  # the others: one image size
        counts = case.model.prepare(images, prompts).image_mask.sum(1).tolist()
        assert counts[0] != counts[2] and counts[1] == 0
    batch = case.model.generate(images, prompts, max_new_tokens=8)
    for image, prompt, row in zip(images, prompts, batch, strict=True):
        assert row.token_ids == case.model.generate(image, prompt, max_new_tokens=8).token_ids


def test_misplaced_image_tokens_and_odd_images_are_clear_errors(case, photo):
    from mmlens.errors import PromptError

    token = case.model.adapter.image_token
    with pytest.raises(PromptError, match="2 times"):
        case.model.prepare(photo, f"{token} and {token}")
    with pytest.raises(PromptError, match="no image was given"):
        case.model.prepare(None, f"{token} describe")
    if case.name == "qwen2_5_vl":  # the bare pad without its start and end markers
        with pytest.raises(PromptError, match="image_pad"):
            case.model.prepare(photo, "<|image_pad|> describe")
    thin = np.zeros((1, 500, 3), dtype=np.uint8)
    if case.name == "qwen2_5_vl":  # its processor refuses aspect ratios beyond 200:1
        from mmlens.errors import ImageError

        with pytest.raises(ImageError, match="500x1.*Crop or pad"):
            case.model.prepare(thin, PROMPT)
    else:
        assert case.model.prepare(thin, PROMPT).image_mask.any()


def test_several_images_in_one_prompt(case, photo, wide_photo):
    """Each image's positions come from the input ids, in the order the prompt marks them."""
    token = case.model.adapter.image_token
    inputs = case.model.prepare([wide_photo, photo], f"{token} and {token} , describe .")
    alone = [
        int(case.model.prepare(image, PROMPT).image_mask.sum()) for image in (wide_photo, photo)
    ]
    positions = inputs.image_positions.tolist()
    runs = [[positions[0]]]
    for position in positions[1:]:
        if position == runs[-1][-1] + 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    assert [len(run) for run in runs] == alone
    reference = case.hf(**case.hf_kwargs(inputs)).logits
    torch.testing.assert_close(case.model(inputs=inputs), reference, atol=ATOL, rtol=0)
    expected = case.hf.generate(**case.hf_kwargs(inputs), max_new_tokens=10, do_sample=False)
    ours = case.model.generate(inputs=inputs, max_new_tokens=10)
    assert ours.token_ids == expected[0, inputs.n_positions :].tolist()


EXPECTED_GRIDS = {
    "llava_original": (4, 4),
    "llava_next": None,
    "qwen2_5_vl": (3, 4),
    "gemma3": (2, 2),
}


def test_patch_grids_name_positions_and_drive_the_grid_views(case, prepared, photo, wide_photo):
    from mmlens.analyses.attention import image_attention
    from mmlens.analyses.patching import image_regions
    from mmlens.errors import ConfigError

    grid = prepared.patch_grid(0)
    assert grid == EXPECTED_GRIDS[case.name]
    names = [case.model.to_str_tokens(prepared)[p] for p in prepared.image_positions.tolist()]
    _, cache = case.model.run_with_cache(inputs=prepared)
    if grid is None:
        assert names == [f"<image {i}>" for i in range(len(names))]
        with pytest.raises(ConfigError, match="not one patch grid"):
            image_regions(prepared)
        return
    assert names[-1] == f"<image {grid[0] - 1},{grid[1] - 1}>"
    regions = image_regions(prepared, per_side=2)
    covered = sorted(p for positions in regions.values() for p in positions.tolist())
    assert covered == prepared.image_positions.tolist()
    table = image_attention(cache, block=0)
    assert table.patch_row.max() + 1 == grid[0] and table.patch_col.max() + 1 == grid[1]
    token = case.model.adapter.image_token
    several = case.model.prepare([wide_photo, photo], f"{token} {token}")
    assert several.patch_grid(0) is None


def test_the_cli_runs_every_family(case, wide_photo, tmp_path, capsys):
    from PIL import Image

    from mmlens.cli import main
    from mmlens.trace import Trace

    image = tmp_path / "cat.png"
    Image.fromarray(wide_photo).save(image)
    model = case.cli_source[0]
    if len(case.cli_source) > 1:  # the original format: convert once, then use the output
        model = str(tmp_path / "converted")
        assert main(["convert", *case.cli_source[:1], model, *case.cli_source[1:]]) == 0
    out = tmp_path / "trace"
    args = ["trace", str(image), "--model", model, "--max-new-tokens", "4", "--out", str(out)]
    assert main(args) == 0
    assert Trace.load(out).token_ids.tolist() == (
        case.model.trace(
            wide_photo, "Please describe this image in detail.", max_new_tokens=4
        ).token_ids.tolist()
    )
    assert "Generated" in capsys.readouterr().out
