"""The fast path (plain `transformers` modules, residual hooks on the decoder layers) equals the
bridge path for `trace` and `generate` on every family, alone, batched and with skipped blocks,
and steps aside whenever something needs the bridge."""

import numpy as np
import pytest
from PIL import Image

from mmlens.fast_path import use_fast_path
from mmlens.knockout import attention_knockout

PROMPT = "What is in the picture?"


def _both(model, call):
    """`call()` on the bridge path, then on the fast path."""
    model.use_fast_path = False
    try:
        bridge = call()
    finally:
        model.use_fast_path = True
    return bridge, call()


def _assert_same_trace(bridge, fast):
    assert bridge.token_ids.tolist() == fast.token_ids.tolist()
    for name in ("logprob", "entropy", "jsd", "final_jsd", "candidate_prob", "rival_logprobs"):
        np.testing.assert_allclose(
            getattr(fast, name), getattr(bridge, name), atol=1e-5, rtol=1e-5, err_msg=name
        )
    assert (fast.topk_ids[..., 0] == bridge.topk_ids[..., 0]).mean() > 0.99  # ties aside


@pytest.mark.parametrize("skip", [[], [1]])
def test_trace_equals_the_bridge(case, image, skip):
    model = case.model
    assert use_fast_path(model)
    bridge, fast = _both(
        model,
        lambda: model.trace(image, PROMPT, max_new_tokens=6, skip_layers=skip, progress=False),
    )
    _assert_same_trace(bridge, fast)
    assert list(fast.layers) == list(bridge.layers)


def test_a_batch_and_generate_equal_the_bridge(case, image):
    model = case.model
    other = Image.fromarray(np.asarray(image)[::-1].copy())
    prompts = [PROMPT, "Say what you see, in a few words."]
    bridge, fast = _both(
        model, lambda: model.trace([image, other], prompts, max_new_tokens=5, progress=False)
    )
    for one, two in zip(bridge, fast, strict=True):
        _assert_same_trace(one, two)
    inputs = model.prepare(image, PROMPT)
    bridge, fast = _both(
        model, lambda: model.generate(inputs=inputs, max_new_tokens=8, verbose=False)
    )
    assert bridge.token_ids == fast.token_ids


def test_the_bridge_runs_whenever_something_needs_it(case, image):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    seen = []
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda a, hook: seen.append(1))]):
        assert not use_fast_path(model)
        model.generate(inputs=inputs, max_new_tokens=2, verbose=False)
    assert seen  # the hook ran: the bridge was used
    with attention_knockout(model, inputs, ["image->last"], 0):
        assert not use_fast_path(model)
    assert not use_fast_path(model, needs_patterns=True)
    assert use_fast_path(model)  # nothing left behind
