"""Knockout sweeps: the shared sweep (later blocks only, edges batched) equals one whole forward
per window and edge, and a planted model whose last position can read the image in one block
only shows the drop in exactly that block's windows."""

import numpy as np
import pandas as pd
import pytest
import torch
from _support import load_hf

import mmlens
from mmlens.analyses.flow import EDGES, knockout_sweep, plot_knockout_sweep
from mmlens.errors import ConfigError, PromptError

PROMPT = "what is in the image ?"


def test_the_shared_sweep_equals_the_naive_loop(tiny, photo):
    calls = []
    tower = tiny.adapter.hf_model.model.vision_tower
    handle = tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        shared = knockout_sweep(tiny, photo, PROMPT, window=2, progress=False)
        encoded_shared = len(calls)
        naive = knockout_sweep(tiny, photo, PROMPT, window=2, shared=False, progress=False)
    finally:
        handle.remove()
    assert encoded_shared == 2  # the unedited run, then once for every window
    assert len(calls) - encoded_shared == 1 + len(naive)  # naive: every forward
    assert list(shared.edge.unique()) == list(EDGES)
    assert list(shared.start.unique()) == list(range(tiny.n_blocks - 1))
    pd.testing.assert_frame_equal(shared.drop(columns="value"), naive.drop(columns="value"),
                                  check_exact=False, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(shared.value, naive.value, rtol=1e-4, atol=1e-6)
    assert shared.change.abs().max() > 1e-4  # something changed somewhere


@pytest.fixture(scope="module")
def planted(checkpoints, tmp_path_factory):
    """The tiny LLaVA with every attention output zeroed except block 2's: the last position can
    read the image (or anything else) only there, and in one hop."""
    hf = load_hf(checkpoints["gqa"])
    for index, layer in enumerate(hf.model.language_model.layers):
        if index != 2:
            torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
    folder = tmp_path_factory.mktemp("planted")
    hf.save_pretrained(folder)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "chat_template.jinja",
        "special_tokens_map.json",
    ):
        source = checkpoints["gqa"] / name
        if source.is_file():
            (folder / name).write_bytes(source.read_bytes())  # fmt: skip
    return mmlens.load(folder)


def test_a_planted_window_shows_in_exactly_that_window(planted, photo):
    with torch.no_grad():
        token = int(planted(photo, PROMPT)[0, -1].argmax())

    def answer(logits):
        return float(torch.softmax(logits[-1].double(), -1)[token])

    table = knockout_sweep(planted, photo, PROMPT, window=1, metric=answer, progress=False)
    image_last = table[table.edge == "image->last"].set_index("start").change
    # (up to float rounding: the knockouts run as a batch of three, the base alone)
    assert image_last.drop(2).abs().max() < 1e-6  # attention elsewhere writes nothing
    assert abs(image_last[2]) > 1e-3, image_last
    assert table[table.edge == "image->prompt"].change.abs().max() < 1e-6  # no second hop
    # With image->last cut in block 2, the answer no longer depends on the image at all.
    other = np.flipud(photo).copy()
    again = knockout_sweep(planted, other, PROMPT, window=1, metric=answer, progress=False)
    cut = table[(table.edge == "image->last") & (table.start == 2)].value.item()
    cut_other = again[(again.edge == "image->last") & (again.start == 2)].value.item()
    assert cut == pytest.approx(cut_other, abs=1e-6)
    assert abs(table.base.iloc[0] - again.base.iloc[0]) > 1e-6  # the image mattered before


def test_the_figure_and_bad_settings(tiny, photo):
    table = knockout_sweep(tiny, photo, PROMPT, window=3, progress=False)
    figure = plot_knockout_sweep(table)
    assert len(figure.axes[0].lines) == len(EDGES) + 1  # the zero line
    with pytest.raises(ConfigError, match="window=0"):
        knockout_sweep(tiny, photo, PROMPT, window=0)
    with pytest.raises(ConfigError, match="window=True"):
        knockout_sweep(tiny, photo, PROMPT, window=True)
    with pytest.raises(ConfigError, match="distinct"):
        knockout_sweep(tiny, photo, PROMPT, edges=["image->last", "image->last"])
    with pytest.raises(ConfigError, match="names its groups"):
        knockout_sweep(tiny, photo, PROMPT, edges=[([1, 2], "last")])
    with pytest.raises(ConfigError, match="not both"):
        knockout_sweep(tiny, photo, PROMPT, "cat", metric=lambda logits: 0.0)
    with pytest.raises(ConfigError, match="knockout sweep"):
        plot_knockout_sweep(pd.DataFrame({"x": [1]}))


def test_a_sweep_inside_a_caption(tiny, photo):
    """`answer_start` puts text the model has said after the template: the swept position is
    the one that predicts the caption's next word."""
    said = " a photo of"
    inputs = tiny.prepare(photo, PROMPT, answer_start=said)
    chat = tiny.adapter.chat_prompt(PROMPT, with_image=True)
    by_hand = tiny.prepare(photo, chat + said, chat_template=False, prepend_bos=True)
    assert torch.equal(inputs.input_ids, by_hand.input_ids)
    table = knockout_sweep(tiny, photo, PROMPT, window=2, answer_start=said, progress=False)
    with torch.no_grad():
        probs = torch.softmax(tiny(inputs=inputs)[0, -1].double(), -1)
    assert table.base.iloc[0] == pytest.approx(float(probs.max()), rel=1e-5)
    assert table.attrs["answer_start"] == said
    with pytest.raises(PromptError, match="answer_start"):
        tiny.prepare(photo, PROMPT, answer_start="<image>")
