"""Original-format LLaVA checkpoints: conversion equals llava-hf, finding the tower, refusals."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlavaForConditionalGeneration

import mmlens
from mmlens.adapters import LlavaOriginalAdapter
from mmlens.cli import main
from mmlens.errors import CheckpointNotFoundError, ConfigError, UnsupportedModelError
from mmlens.registry import adapter_for
from mmlens.zoo.tiny_original import TOWER_HUB_ID, build_tiny_original_llava

PROMPT = "describe this image in detail ."


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_tiny_original_llava(tmp_path_factory.mktemp("original"))


def _copy(folders, tmp_path, **config_changes):
    """A copy of the original checkpoint with config.json changed."""
    copy = tmp_path / "copy"
    shutil.copytree(folders.original, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(config_changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_the_original_layout_selects_the_converting_adapter(folders):
    assert adapter_for(folders.original) is LlavaOriginalAdapter
    assert "LlavaLlamaForCausalLM" in mmlens.registry.supported_architectures()


def test_converted_model_has_the_llava_hf_weights_and_image_preprocessing(folders, wide_photo):
    model = mmlens.load(folders.original, vision_tower=folders.tower)
    twin = mmlens.load(folders.hf)
    inputs = model.prepare(wide_photo, PROMPT)
    expected = twin.prepare(wide_photo, PROMPT)
    assert torch.equal(inputs.input_ids, expected.input_ids)
    assert torch.equal(inputs.pixel_values, expected.pixel_values)  # padded to square, mean colour
    assert model.adapter.image_modes[0] == "pad"
    hf = LlavaForConditionalGeneration.from_pretrained(folders.hf, attn_implementation="eager")
    torch.testing.assert_close(model(inputs=inputs), hf(**inputs.model_kwargs()).logits)
    # The appended image token scores exactly 0 and is never chosen over real tokens here.
    assert (model(inputs=inputs)[..., model.adapter.image_token_id] == 0).all()


def test_a_config_pointing_at_a_local_tower_needs_no_option(folders, tmp_path, photo):
    copy = _copy(folders, tmp_path, mm_vision_tower=str(folders.tower))
    model = mmlens.load(copy)
    reference = mmlens.load(folders.original, vision_tower=folders.tower)
    torch.testing.assert_close(model(photo, PROMPT), reference(photo, PROMPT), atol=0, rtol=0)


def test_a_missing_tower_is_one_clear_error(folders):
    with pytest.raises(CheckpointNotFoundError, match=f"{TOWER_HUB_ID}.*never downloads"):
        mmlens.load(folders.original)
    with pytest.raises(CheckpointNotFoundError, match="is not a folder"):
        mmlens.load(folders.original, vision_tower="/nonexistent/clip")


def test_a_tower_without_its_config_is_named(folders, tmp_path):
    tower = tmp_path / "tower"
    shutil.copytree(folders.tower, tower)
    (tower / "config.json").unlink()
    with pytest.raises(CheckpointNotFoundError, match="tower .* has no readable config.json"):
        mmlens.load(folders.original, vision_tower=tower)


def test_unknown_load_options_are_refused(folders):
    with pytest.raises(ConfigError, match="vision_towr: not an option"):
        mmlens.load(folders.original, vision_towr=folders.tower)
    with pytest.raises(ConfigError, match="vision_tower: not an option of LlavaAdapter"):
        mmlens.load(folders.hf, vision_tower=folders.tower)


def test_pickle_weights_are_refused_with_the_way_out(folders, tmp_path):
    copy = _copy(folders, tmp_path)
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(CheckpointNotFoundError, match="pickle weights.*never unpickles"):
        mmlens.load(copy, vision_tower=folders.tower)


def test_a_damaged_weights_file_is_named(folders, tmp_path):
    copy = _copy(folders, tmp_path)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointNotFoundError, match="damaged"):
        mmlens.load(copy, vision_tower=folders.tower)


def test_a_missing_weight_is_named(folders, tmp_path):
    copy = _copy(folders, tmp_path)
    weights = load_file(copy / "model.safetensors")
    del weights["model.mm_projector.2.bias"]
    save_file(weights, copy / "model.safetensors")
    with pytest.raises(CheckpointNotFoundError, match="multi_modal_projector.linear_2.bias"):
        mmlens.load(copy, vision_tower=folders.tower)


@pytest.mark.parametrize(
    "setting",
    [
        {"mm_projector_type": "linear"},
        {"mm_use_im_start_end": True},
        {"mm_patch_merge_type": "spatial_unpad"},
        {"tie_word_embeddings": True},
    ],
)
def test_layouts_other_than_llava_1_5_are_refused_by_name(folders, tmp_path, setting):
    copy = _copy(folders, tmp_path, **setting)
    key = next(iter(setting))
    with pytest.raises(UnsupportedModelError, match=key):
        mmlens.load(copy, vision_tower=folders.tower)


def test_convert_writes_a_checkpoint_transformers_loads_alone(folders, tmp_path, photo, capsys):
    out = tmp_path / "converted"
    code = main(["convert", str(folders.original), str(out), "--vision-tower", str(folders.tower)])
    assert code == 0 and "converted" in capsys.readouterr().out.lower()
    converted = LlavaForConditionalGeneration.from_pretrained(out)
    reference = LlavaForConditionalGeneration.from_pretrained(folders.hf)
    for (name, value), (ref_name, ref_value) in zip(
        sorted(converted.state_dict().items()), sorted(reference.state_dict().items()), strict=True
    ):
        assert name == ref_name and torch.equal(value, ref_value), name
    model = mmlens.load(out)
    assert model.generate(photo, PROMPT, max_new_tokens=8).token_ids == (
        mmlens.load(folders.hf).generate(photo, PROMPT, max_new_tokens=8).token_ids
    )


def test_convert_refuses_bad_targets_and_hf_checkpoints(folders, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    args = ["--vision-tower", str(folders.tower)]
    assert main(["convert", str(folders.original), str(tmp_path / "full"), *args]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["convert", str(folders.hf), str(tmp_path / "new")]) == 2
    assert "nothing to convert" in capsys.readouterr().err
    assert main(["convert", str(folders.hf), str(tmp_path / "new"), *args]) == 2
    assert "--vision-tower does not apply" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
