"""Models spread by a device map (`mmlens.load(..., device_map=...)`): on this CPU-only machine,
some blocks and the unembedding are offloaded to disk, so Accelerate's hooks load their weights
at every call. Everything equals the model loaded whole, on every family."""

import numpy as np
import pytest
import torch
from torch import nn

import mmlens
from mmlens.devices import execution_device, resolve_device_map
from mmlens.errors import ConfigError
from mmlens.knockout import attention_knockout

PROMPT = "What is in the picture?"


def offloading_map(hf: nn.Module) -> dict[str, str]:
    """Every module of `hf` on the CPU except the odd decoder blocks and the unembedding, which
    go to disk."""
    placement: dict[str, str] = {}
    for prefix, inner, skip in (("model", hf.model, "language_model"), ("", hf, "model")):
        for name, _ in inner.named_children():
            if name != skip:
                placement[f"{prefix}.{name}".strip(".")] = "cpu"
        for name, _ in inner.named_parameters(recurse=False):  # LLaVA-NeXT's image_newline
            placement[f"{prefix}.{name}".strip(".")] = "cpu"
    language_model = hf.model.language_model
    for name, _ in language_model.named_children():
        placement[f"model.language_model.{name}"] = "cpu"
    del placement["model.language_model.layers"]
    for block in range(len(language_model.layers)):
        placement[f"model.language_model.layers.{block}"] = "disk" if block % 2 else "cpu"
    placement["lm_head"] = "disk"
    configs = (hf.config, hf.config.get_text_config())
    if any(getattr(config, "tie_word_embeddings", False) for config in configs):  # one weight
        placement["model.language_model.embed_tokens"] = "disk"
    return placement


def _close(mine: torch.Tensor, theirs: torch.Tensor, tolerance: float = 1e-5) -> None:
    assert (mine - theirs).abs().max() <= tolerance * (1 + theirs.abs().max())


def test_a_spread_model_equals_the_whole_one(case, image, tmp_path):
    whole = case.model
    spread = case.load_again(device_map=offloading_map(case.hf), offload_folder=tmp_path)
    hf = spread.adapter.hf_model
    assert "disk" in hf.hf_device_map.values()
    assert hf.lm_head.weight.device.type == "meta"  # really offloaded: loaded at each call
    assert spread.device == torch.device("cpu")
    inputs = whole.prepare(image, PROMPT)

    _close(spread(inputs=inputs), whole(inputs=inputs))
    _close(spread.W_U, whole.W_U, 0)
    _close(spread.W_E, whole.W_E, 0)

    for fast in (True, False):
        spread.use_fast_path = whole.use_fast_path = fast
        for skip in ([], [1]):
            mine = spread.trace(image, PROMPT, max_new_tokens=4, skip_layers=skip, progress=False)
            theirs = whole.trace(image, PROMPT, max_new_tokens=4, skip_layers=skip, progress=False)
            assert mine.token_ids.tolist() == theirs.token_ids.tolist()
            np.testing.assert_allclose(mine.jsd, theirs.jsd, atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(mine.logprob, theirs.logprob, atol=1e-5, rtol=1e-5)
    spread.use_fast_path = whole.use_fast_path = True

    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.1.attn.hook_pattern"]
    _, mine = spread.run_with_cache(inputs=inputs, names_filter=names)
    _, theirs = whole.run_with_cache(inputs=inputs, names_filter=names)
    for name in names:
        _close(mine[name], theirs[name])
    mine = spread.generate(inputs=inputs, max_new_tokens=6, verbose=False)
    theirs = whole.generate(inputs=inputs, max_new_tokens=6, verbose=False)
    assert mine.token_ids == theirs.token_ids

    with attention_knockout(spread, inputs, ["image->last"], [0, 1]):
        mine = spread(inputs=inputs)
    with attention_knockout(whole, inputs, ["image->last"], [0, 1]):
        theirs = whole(inputs=inputs)
    _close(mine, theirs)


def test_auto_with_a_memory_budget_offloads_what_does_not_fit(tmp_path):
    whole = mmlens.load("mmlens/shapes")
    spread = mmlens.load(
        "mmlens/shapes", device_map="auto", max_memory={"cpu": "600KB"}, offload_folder=tmp_path
    )
    assert "disk" in spread.adapter.hf_model.hf_device_map.values()
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[8:24, 8:24, 0] = 255
    mine = spread.trace(image, "describe the picture .", max_new_tokens=5, progress=False)
    theirs = whole.trace(image, "describe the picture .", max_new_tokens=5, progress=False)
    assert mine.token_ids.tolist() == theirs.token_ids.tolist()
    np.testing.assert_allclose(mine.jsd, theirs.jsd, atol=1e-5, rtol=1e-5)


def test_offloaded_modules_compute_on_the_first_accelerator():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    model.hf_device_map = {"0": 0, "1": "cpu", "2": "disk"}
    assert execution_device(model, model[0]) == torch.device("cuda", 0)
    assert execution_device(model, model[1]) == torch.device("cuda", 0)  # offloaded to RAM
    assert execution_device(model, model[2]) == torch.device("cuda", 0)
    model.hf_device_map = {"0": "cpu", "1": "cpu", "2": "disk"}
    assert execution_device(model, model[2]) == torch.device("cpu")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"device": "cpu", "device_map": "auto"}, "pass one"),
        ({"device_map": "everywhere"}, "device_map='everywhere'; use one of auto, balanced"),
        ({"device_map": {"": "cuda:3"}}, "device='cuda:3'"),
        ({"device_map": {"": "disk"}}, "pass offload_folder"),
        ({"device_map": {}}, "non-empty dict"),
        ({"device_map": {"lm_head": "cpu"}}, "The device_map cannot place .*: The device_map "),
        ({"offload_folder": "x"}, "go with device_map"),
    ],
)
def test_bad_device_maps_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        mmlens.load("mmlens/shapes", **kwargs)


def test_a_memory_budget_that_is_not_a_dict_is_a_clear_error():
    with pytest.raises(ConfigError, match="max_memory='20GiB'; give a dict"):
        resolve_device_map("auto", max_memory="20GiB")


def test_tied_embeddings_kept_apart_are_a_clear_error(tmp_path):
    from mmlens.zoo.tiny_gemma3 import build_tiny_gemma3

    path = build_tiny_gemma3(tmp_path / "gemma3")  # ties its input and output embeddings
    apart = {"model": "cpu", "lm_head": "disk"}
    with pytest.raises(ConfigError, match="embed_tokens on 'cpu' and lm_head on 'disk'.*ties"):
        mmlens.load(path, device_map=apart, offload_folder=tmp_path / "offload")
