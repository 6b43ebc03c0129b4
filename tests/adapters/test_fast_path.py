"""The fast path (plain `transformers` modules, residual hooks on the decoder layers) equals the
bridge path for `trace` and `generate` on every family, alone, batched and with skipped blocks,
and steps aside whenever something needs the bridge."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.errors import ConfigError
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


RESIDUAL_FILTERS = [
    "blocks.1.hook_resid_pre",  # a name also caches its alias (blocks.1.hook_in), as TL does
    ["blocks.0.hook_in", "blocks.1.hook_out"],
    lambda name: name.startswith("blocks.") and name.endswith("hook_resid_post"),
]


@pytest.mark.parametrize("names_filter", RESIDUAL_FILTERS, ids=["name", "list", "callable"])
def test_run_with_cache_on_the_residual_stream_equals_the_bridge(
    case, image, names_filter, monkeypatch
):
    model = case.model
    other = Image.fromarray(np.asarray(image)[::-1].copy())
    inputs = model.prepare([image, other], [PROMPT, "Say what you see."])
    model.use_fast_path = False
    bridge_out, bridge = model.run_with_cache(
        inputs=inputs, names_filter=names_filter, return_type="both"
    )
    model.use_fast_path = True
    with monkeypatch.context() as patched:  # the fast path must not touch the bridge's runner
        patched.setattr(model.bridge, "run_with_cache", _fails)
        fast_out, fast = model.run_with_cache(
            inputs=inputs, names_filter=names_filter, return_type="both"
        )
    assert list(fast.cache_dict) == list(bridge.cache_dict)
    real = inputs.attention_mask.bool()  # padding positions hold whatever each kernel leaves
    for name in bridge.cache_dict:
        assert fast[name].shape == bridge[name].shape
        difference = (fast[name] - bridge[name])[real].abs().max()
        assert difference <= 1e-4 * bridge[name][real].abs().max(), name
    assert (fast_out[0] - bridge_out[0])[real].abs().max() <= 1e-4 * bridge_out[0].abs().max()
    assert abs(fast_out[1] - bridge_out[1]) <= 1e-5 * bridge_out[1]
    first = next(iter(fast.cache_dict))
    assert fast.image_part(first).shape[1] == int(inputs.image_mask[0].sum())


def test_run_with_cache_options_on_the_fast_path(case, image, monkeypatch):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post"]
    options = {"remove_batch_dim": True, "device": "cpu", "return_cache_object": False}
    model.use_fast_path = False
    _, bridge = model.run_with_cache(inputs=inputs, names_filter=names, **options)
    model.use_fast_path = True
    with monkeypatch.context() as patched:
        patched.setattr(model.bridge, "run_with_cache", _fails)
        loss, fast = model.run_with_cache(
            inputs=inputs, names_filter=names, return_type="loss", **options
        )
    assert isinstance(fast, dict) and list(fast) == list(bridge)
    for name in names:
        assert fast[name].shape == bridge[name].shape == (inputs.input_ids.shape[1], model.d_model)
    assert (
        loss.ndim == 0 and abs(loss.item() - model(inputs=inputs, return_type="loss").item()) < 1e-4
    )


@pytest.mark.parametrize(
    "call",
    [
        {"names_filter": None},  # everything: vision and attention hooks too
        {"names_filter": ["blocks.0.hook_resid_post", "blocks.0.attn.hook_pattern"]},
        {"names_filter": "blocks.0.hook_resid_post", "pos_slice": -1},
        {"names_filter": "blocks.0.hook_resid_post", "hook": True},
    ],
    ids=["all", "pattern", "pos_slice", "user-hook"],
)
def test_run_with_cache_takes_the_bridge_when_it_must(case, image, call, monkeypatch):
    model = case.model
    inputs = model.prepare(image, PROMPT)
    call = dict(call)
    ran = []
    real = model.bridge.run_with_cache
    monkeypatch.setattr(
        model.bridge, "run_with_cache", lambda *a, **k: ran.append(1) or real(*a, **k)
    )
    if call.pop("hook", False):
        with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", lambda a, hook: None)]):
            model.run_with_cache(inputs=inputs, **call)
    else:
        model.run_with_cache(inputs=inputs, **call)
    assert ran


def _fails(*args, **kwargs):
    raise AssertionError("the bridge ran")


def test_the_attention_kernel_auto_picks(monkeypatch):
    import mmlens.fast_path as fast_path

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(fast_path, "is_flash_attn_2_available", lambda: True)
    assert fast_path.attention_kernel("auto", cuda, torch.bfloat16) == "flash_attention_2"
    assert fast_path.attention_kernel("auto", cuda, torch.float32) == "sdpa"  # FA2 needs 16 bits
    assert fast_path.attention_kernel("auto", cpu, torch.float16) == "sdpa"
    assert fast_path.attention_kernel("eager", cuda, torch.bfloat16) == "eager"
    monkeypatch.setattr(fast_path, "is_flash_attn_2_available", lambda: False)
    assert fast_path.attention_kernel("auto", cuda, torch.bfloat16) == "sdpa"
    with pytest.raises(ConfigError, match="fast_attention='flash'; choose one of"):
        fast_path.attention_kernel("flash", cpu, torch.float32)


def test_a_kernel_this_machine_lacks_is_a_clear_error(shapes_model, image):
    model = shapes_model
    model.fast_attention = "flash_attention_2"
    try:
        with pytest.raises(
            ConfigError,
            match="fast_attention='flash_attention_2' cannot run here .*FlashAttention2.*'auto'",
        ):
            model.generate(image, PROMPT, max_new_tokens=2, verbose=False)
        assert model.adapter.hf_model.config._attn_implementation == "eager"  # restored
        assert use_fast_path(model)
    finally:
        model.fast_attention = "auto"
    model.generate(image, PROMPT, max_new_tokens=2, verbose=False)
