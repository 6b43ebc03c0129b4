"""`model.trace` records what an independent computation on HF hidden states gives."""

import numpy as np
import pytest
import torch
from _support import hf_without_blocks, load_hf, paper_code_divergence, reference_logprobs
from scipy.spatial.distance import jensenshannon

import mmlens

PROMPT = "describe this image in detail ."
STEPS = 12


@pytest.fixture(scope="module")
def hf_run(checkpoints, photo):
    """HF generate keeping every hidden state (the paper's pipeline), as the reference."""
    model = mmlens.load(checkpoints["gqa"])
    hf = load_hf(checkpoints["gqa"])
    inputs = model.prepare(photo, PROMPT)
    out = hf.generate(
        **inputs.model_kwargs(),
        max_new_tokens=STEPS,
        do_sample=False,
        output_hidden_states=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return model, hf, out


@pytest.mark.parametrize("lens", ["normed", "paper"])
def test_trace_matches_hf_hidden_states(hf_run, photo, lens):
    model, hf, out = hf_run
    trace = model.trace(photo, PROMPT, max_new_tokens=STEPS, lens=lens, rivals=["dog", "cat"])
    generated = out.sequences[0, -len(out.logits) :].tolist()
    assert trace.token_ids.tolist() == generated
    reference = reference_logprobs(hf, out.hidden_states, lens)
    steps = np.arange(trace.n_steps)
    # The last layer's log-probs are HF's own output distribution.
    final = torch.log_softmax(torch.stack([s[0] for s in out.logits]).double(), -1).numpy()
    np.testing.assert_allclose(trace.logprob[:, -1], final[steps, trace.token_ids], atol=1e-5)
    np.testing.assert_allclose(
        trace.logprob, reference[steps, :, trace.token_ids], atol=1e-5, rtol=0
    )
    rival_ids = [model.to_single_token(w) for w in ("dog", "cat")]
    np.testing.assert_allclose(trace.rival_logprobs, reference[..., rival_ids], atol=1e-5)
    probs = np.exp(reference)
    expected_jsd = np.array(
        [[jensenshannon(p[i], p[i + 1]) ** 2 for i in range(len(p) - 1)] for p in probs]
    )
    np.testing.assert_allclose(trace.jsd[:, :-1], expected_jsd, atol=1e-6, rtol=0)
    assert np.isnan(trace.jsd[:, -1]).all()
    expected_paper = paper_code_divergence(reference[:, :-1], reference[:, 1:])
    np.testing.assert_allclose(trace.paper_jsd[:, :-1], expected_paper, rtol=1e-4, atol=1e-12)
    assert np.isnan(trace.paper_jsd[:, -1]).all()
    entropy = -(probs * reference).sum(-1)
    np.testing.assert_allclose(trace.entropy, entropy, atol=1e-4)
    top1 = reference.argmax(-1)  # [step, layer]
    assert (trace.topk_ids[..., 0] == top1).all()
    ranks = (reference > reference[steps, :, trace.token_ids][..., None]).sum(-1)
    assert np.array_equal(trace.rank, ranks)
    # top1_logprobs[s, j, i] = log p_i(top-1 token of layer j)
    expected_tracks = np.take_along_axis(reference, top1[:, None, :], axis=-1)  # [s, i, j]
    np.testing.assert_allclose(
        trace.top1_logprobs, expected_tracks.transpose(0, 2, 1), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("lens", ["normed", "paper"])
def test_trace_features_are_hf_hidden_states(hf_run, photo, lens):
    model, hf, out = hf_run
    trace = model.trace(photo, PROMPT, max_new_tokens=4, keep_features=True, lens=lens)
    assert trace.features.shape == (trace.n_steps, model.n_blocks + 1, model.d_model)
    for step in range(trace.n_steps):
        hidden = out.hidden_states[step]
        for layer in range(model.n_blocks):
            np.testing.assert_allclose(trace.features[step, layer], hidden[layer][0, -1], atol=1e-5)
        # HF's last entry is final-normed: so is the paper lens's, the default keeps it raw
        last_normed = np.allclose(trace.features[step, -1], hidden[-1][0, -1], atol=1e-5)
        assert last_normed == (lens == "paper")


@pytest.mark.parametrize("skip", [[1, 2], [0], [3], [0, 3]])
def test_skipping_equals_hf_with_layers_removed(hf_run, photo, skip):
    model, hf, _ = hf_run
    reduced = hf_without_blocks(hf, skip)
    inputs = model.prepare(photo, PROMPT)
    expected = reduced.generate(**inputs.model_kwargs(), max_new_tokens=20, do_sample=False)
    expected_ids = expected[0, inputs.n_positions :].tolist()
    assert (
        model.generate(inputs=inputs, max_new_tokens=20, skip_layers=skip).token_ids == expected_ids
    )
    trace = model.trace(photo, PROMPT, max_new_tokens=20, skip_layers=skip)
    assert trace.token_ids.tolist() == expected_ids
    assert trace.layers.tolist() == [0] + [b + 1 for b in range(model.n_blocks) if b not in skip]
    # Skipping is undone afterwards: the full model is back.
    full = hf.generate(**inputs.model_kwargs(), max_new_tokens=20, do_sample=False)
    assert (
        model.generate(inputs=inputs, max_new_tokens=20).token_ids
        == full[0, inputs.n_positions :].tolist()
    )


def test_skipped_blocks_are_not_computed(tiny, photo):
    calls: list[str] = []
    hooks = [
        (f"blocks.{b}.hook_resid_post", lambda t, hook: calls.append(hook.name)) for b in range(4)
    ]
    with tiny.hooks(hooks):
        tiny.generate(photo, PROMPT, max_new_tokens=3, skip_layers=[1, 2])
    assert calls and not any(".1." in c or ".2." in c for c in calls)
