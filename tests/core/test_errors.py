"""Bad input gets one clear error of the MMLensError family, naming the value and the fix."""

import json

import pytest

import mmlens
from mmlens.errors import (
    CheckpointNotFoundError,
    ConfigError,
    ImageError,
    LayerIndexError,
    MMLensError,
    PromptError,
    TokenError,
    TraceFormatError,
    UnsupportedModelError,
)

PROMPT = "describe this image ."


def test_missing_image_file(tiny, tmp_path):
    with pytest.raises(ImageError, match="not found: .*nope.png"):
        tiny.trace(tmp_path / "nope.png", PROMPT, max_new_tokens=1)


def test_unreadable_image_file(tiny, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        tiny.prepare(fake, PROMPT)


def test_decompression_bomb(tiny, tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is then over twice the limit
    with pytest.raises(ImageError, match="too large to open safely"):
        tiny.trace(path, PROMPT, max_new_tokens=1)


def test_prompt_with_two_image_tokens(tiny, photo):
    with pytest.raises(PromptError, match="2 times"):
        tiny.prepare(photo, "<image> and <image> ?")


def test_image_token_without_image(tiny):
    with pytest.raises(PromptError, match="no image was given"):
        tiny.prepare(None, "<image> describe")


def test_generation_past_the_context_length(tiny, photo):
    limit = tiny.adapter.text_config().max_position_embeddings
    with pytest.raises(PromptError, match=f"more than the model's context of {limit} tokens"):
        tiny.trace(photo, PROMPT, max_new_tokens=limit)
    with pytest.raises(PromptError, match="shorten the prompt"):
        tiny.generate(photo, "word " * limit, max_new_tokens=1)


def test_layer_index_out_of_range(tiny):
    assert tiny.check_layer(tiny.n_blocks) == tiny.n_blocks
    with pytest.raises(LayerIndexError, match=r"0\.\.4"):
        tiny.check_layer(5)
    with pytest.raises(LayerIndexError, match="block 9"):
        tiny.generate(None, PROMPT, max_new_tokens=1, skip_layers=[9])


def test_skip_layers_covering_every_block(tiny):
    with pytest.raises(ConfigError, match="removes all 4 blocks"):
        tiny.trace(None, PROMPT, max_new_tokens=1, skip_layers=[0, 1, 2, 3])


@pytest.mark.parametrize("bad", [0, -3])
def test_max_new_tokens_below_one(tiny, bad):
    with pytest.raises(ConfigError, match="max_new_tokens"):
        tiny.trace(None, PROMPT, max_new_tokens=bad)


def test_rival_that_is_not_one_token(tiny):
    with pytest.raises(TokenError, match=r"splits into \[' dog', ' cat'\]"):  # as decoded
        tiny.trace(None, PROMPT, max_new_tokens=1, rivals=["dog cat"])


def test_unknown_lens(tiny):
    with pytest.raises(ConfigError, match="lens="):
        tiny.trace(None, PROMPT, max_new_tokens=1, lens="raw")


def test_unsupported_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel") as raised:
        mmlens.load(tmp_path)
    for supported in mmlens.registry.supported_architectures():
        assert supported in str(raised.value)


def test_damaged_config_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["LlavaForCondit')
    with pytest.raises(CheckpointNotFoundError, match="config.json is not valid JSON"):
        mmlens.load(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointNotFoundError, match="does not hold a JSON object"):
        mmlens.load(tmp_path)


def test_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="never downloads"):
        mmlens.load("llava-hf/llava-1.5-7b-hf")


def test_errors_share_one_family():
    for error in (
        CheckpointNotFoundError,
        ConfigError,
        ImageError,
        LayerIndexError,
        PromptError,
        TokenError,
        TraceFormatError,
        UnsupportedModelError,
    ):
        assert issubclass(error, MMLensError)
