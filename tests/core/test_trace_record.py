"""The Trace record: shapes, memory bound, tidy frame, exact save/load round trip."""

import dataclasses

import numpy as np
import pytest

from mmlens import Trace
from mmlens.errors import TraceFormatError

PROMPT = "what colour is the ball ?"


@pytest.fixture(scope="module")
def trace(tiny, photo) -> Trace:
    return tiny.trace(
        photo, PROMPT, max_new_tokens=6, rivals=["dog", "sheep"], top_k=3, keep_features=True
    )


def test_arrays_have_no_vocabulary_axis(trace, tiny):
    n_steps, n_layers = trace.n_steps, tiny.n_blocks + 1
    assert trace.layers.tolist() == list(range(n_layers))
    assert trace.logprob.shape == trace.entropy.shape == trace.jsd.shape == (n_steps, n_layers)
    assert trace.topk_ids.shape == (n_steps, n_layers, 3)
    assert trace.rival_logprobs.shape == (n_steps, n_layers, 2)
    assert trace.rank.shape == (n_steps, n_layers)
    assert trace.top1_logprobs.shape == (n_steps, n_layers, n_layers)
    for name in ("logprob", "entropy", "jsd", "topk_ids", "topk_probs", "rival_logprobs", "rank"):
        assert tiny.d_vocab not in getattr(trace, name).shape


def test_records_are_consistent(trace, tiny):
    assert (trace.jsd[:, :-1] >= 0).all() and (trace.jsd[:, :-1] <= np.log(2) + 1e-9).all()
    assert np.all(np.diff(trace.topk_probs, axis=-1) <= 0)  # sorted
    # the generated token is the last layer's argmax (greedy)
    assert (trace.topk_ids[:, -1, 0] == trace.token_ids).all()
    assert trace.image_span is not None
    assert trace.text == tiny.tokenizer.decode(trace.token_ids.tolist(), skip_special_tokens=True)


def test_to_frame_is_tidy(trace):
    frame = trace.to_frame()
    for column in (
        "step",
        "token_id",
        "token",
        "layer",
        "logprob",
        "entropy",
        "jsd",
        "paper_jsd",
        "rival_dog",
        "rival_sheep",
    ):
        assert column in frame.columns
    assert len(frame) == trace.n_steps * len(trace.layers)
    last = frame[frame.layer == frame.layer.max()]
    assert last.jsd.isna().all()
    assert frame[frame.layer < frame.layer.max()].jsd.notna().all()
    row = frame[(frame.step == 2) & (frame.layer == 1)].iloc[0]
    assert row.logprob == trace.logprob[2, 1] and row.paper_jsd == trace.paper_jsd[2, 1]
    assert row.token == trace.tokens[2]


def test_save_load_round_trip_is_exact(trace, tmp_path):
    trace.save(tmp_path / "t")
    loaded = Trace.load(tmp_path / "t")
    for name in (
        "token_ids",
        "layers",
        "logprob",
        "entropy",
        "topk_ids",
        "topk_probs",
        "topk_tokens",
        "rival_logprobs",
        "rank",
        "top1_logprobs",
        "features",
    ):
        assert np.array_equal(getattr(loaded, name), getattr(trace, name)), name
        assert getattr(loaded, name).dtype == getattr(trace, name).dtype
    assert np.array_equal(loaded.jsd, trace.jsd, equal_nan=True)
    assert np.array_equal(loaded.paper_jsd, trace.paper_jsd, equal_nan=True)
    for name in (
        "prompt",
        "prompt_text",
        "prompt_ids",
        "text",
        "tokens",
        "rival_words",
        "rival_ids",
        "image_span",
        "settings",
    ):
        assert getattr(loaded, name) == getattr(trace, name), name
    assert not list((tmp_path / "t").glob("*.pkl"))


def test_load_rejects_a_folder_that_is_not_a_trace(tmp_path):
    with pytest.raises(TraceFormatError, match="not a saved Trace"):
        Trace.load(tmp_path)


def test_trace_validates_shapes(trace):
    from dataclasses import replace

    with pytest.raises(TraceFormatError, match="token strings"):
        replace(trace, tokens=trace.tokens[:-1])


def test_text_only_trace(tiny):
    trace = tiny.trace(None, PROMPT, max_new_tokens=3)
    assert trace.image_span is None and trace.settings["has_image"] is False
    assert trace.n_steps >= 1


def test_recorder_holds_no_big_storage(tiny, photo):
    """Captures and rows own small buffers: views would keep [positions x d] activations and
    [layer x vocab] matrices alive for the whole generation (memory growing with every step)."""
    from mmlens.generation import greedy_decode
    from mmlens.recording import LayerRecorder, resid_hook_names

    recorder = LayerRecorder(
        resid_hook_names(list(range(tiny.n_blocks))),
        tiny.adapter.final_norm(),
        tiny.adapter.unembed(),
        "normed",
        top_k=3,
        rival_ids=[5],
        keep_features=True,
    )
    captured_bytes: list[int] = []

    def inspect_then_record(step, logits, token):
        captured_bytes.extend(t.untyped_storage().nbytes() for t in recorder.captured.values())
        recorder.record(step, logits[None], [token])

    inputs = tiny.prepare(photo, PROMPT)
    with tiny.hooks(recorder.hooks()):
        greedy_decode(tiny.adapter.hf_model, inputs, 3, (), on_step=inspect_then_record)
    row_size = tiny.d_model * tiny.dtype.itemsize
    assert len(captured_bytes) == 3 * (tiny.n_blocks + 1)
    assert max(captured_bytes) == row_size
    rows = [row for name_rows in recorder.rows[0].values() for row in name_rows]
    assert len(rows) == 3 * len(recorder.rows[0]) and all(row.base is None for row in rows)


def test_prefill_unembeds_the_last_position_only(tiny, photo):
    from mmlens.generation import greedy_decode

    positions: list[int] = []
    handle = tiny.adapter.hf_model.register_forward_hook(
        lambda module, args, output: positions.append(output.logits.shape[1])
    )
    try:
        greedy_decode(tiny.adapter.hf_model, tiny.prepare(photo, PROMPT), 2, ())
    finally:
        handle.remove()
    assert positions == [1, 1]


def test_traces_saved_before_paper_jsd_still_load(trace, tmp_path):
    dataclasses.replace(trace, paper_jsd=None).save(tmp_path / "old")
    loaded = Trace.load(tmp_path / "old")
    assert loaded.paper_jsd is None and "paper_jsd" not in loaded.to_frame().columns


def test_stop_at_eos_false_runs_to_max_new_tokens(shapes_model):
    """The demo caption ends with its end-of-sequence token; without stopping there, the trace
    runs on to max_new_tokens and its first steps are the same."""
    from mmlens.cli.single import DEMO_SCENE
    from mmlens.zoo.shapes.scenes import draw_scene

    image, prompt = draw_scene(DEMO_SCENE), "please describe this image in detail ."
    stopped = shapes_model.trace(image, prompt, max_new_tokens=40, progress=False)
    assert stopped.n_steps < 40  # it ended on its own
    longer = shapes_model.trace(
        image, prompt, max_new_tokens=stopped.n_steps + 3, stop_at_eos=False, progress=False
    )
    assert longer.n_steps == stopped.n_steps + 3
    assert longer.token_ids[: stopped.n_steps].tolist() == stopped.token_ids.tolist()
    np.testing.assert_allclose(longer.logprob[: stopped.n_steps], stopped.logprob, atol=1e-6)
