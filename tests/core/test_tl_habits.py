"""TransformerLens habits on an mmlens model, each written as a TransformerLens user writes it:
the prompt first (`model(prompt, image=img)`), a prompt alone (a run without an image),
TransformerLens's keyword arguments (`prepend_bos`, `padding_side`, ...) and return types,
and `transformer_lens.utilities.test_prompt` unmodified."""

import re

import pytest
import torch
from PIL import Image
from transformer_lens import utilities

from mmlens.errors import ConfigError, LayerIndexError, PromptError
from mmlens.generation import Generation
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

QUESTION = "what colour is the circle ?"


@pytest.fixture(scope="module")
def red():
    return draw_scene(Scene((SceneObject("circle", "red", "large", "middle"),)))


@pytest.fixture
def unchecked():
    """Call mmlens as users do: without this suite's runtime type checker, which would refuse
    ill-typed values before mmlens's own checks see them."""
    from jaxtyping import config

    before = config.jaxtyping_disable
    config.update("jaxtyping_disable", True)
    yield
    config.update("jaxtyping_disable", before)


# -- 1. the prompt first, the image by keyword ---------------------------------------------------
def test_the_prompt_can_come_first_with_the_image_by_keyword(shapes_model, red):
    model = shapes_model
    expected = model(red, QUESTION)
    torch.testing.assert_close(model(QUESTION, image=red), expected)
    logits, cache = model.run_with_cache(QUESTION, image=red)
    _, mmlens_cache = model.run_with_cache(red, QUESTION)
    torch.testing.assert_close(logits, expected)
    name = "blocks.3.hook_resid_post"
    torch.testing.assert_close(cache[name], mmlens_cache[name])
    assert cache.inputs.pixel_values is not None
    seen = []
    hook = ("blocks.0.hook_resid_post", lambda act, hook: seen.append(hook.name))
    torch.testing.assert_close(
        model.run_with_hooks(QUESTION, image=red, fwd_hooks=[hook]), expected
    )
    assert seen == ["blocks.0.hook_resid_post"]
    caption = model.generate(red, QUESTION, max_new_tokens=4)
    text = model.generate(QUESTION, image=red, max_new_tokens=4)
    assert isinstance(text, str) and text.endswith(caption.text)
    traced = model.trace(QUESTION, image=red, max_new_tokens=4, progress=False)
    alone = model.trace(red, QUESTION, max_new_tokens=4, progress=False)
    assert traced.token_ids.tolist() == alone.token_ids.tolist()
    # keywords everywhere still mean what they say
    torch.testing.assert_close(model(image=red, prompt=QUESTION), expected)


def test_two_images_or_two_prompts_are_refused(shapes_model, red):
    model = shapes_model
    with pytest.raises(PromptError, match="two images"):
        model(red, image=red)
    with pytest.raises(PromptError, match="two prompts"):
        model(QUESTION, QUESTION, image=red)
    with pytest.raises(PromptError, match="pass them alone"):
        model(model.to_tokens(QUESTION, image=red), image=red)
    with pytest.raises(PromptError, match="not token ids"):
        model.trace(model.to_tokens(QUESTION), max_new_tokens=1)


# -- 2. a prompt alone runs without an image -----------------------------------------------------
def test_a_string_alone_is_a_prompt_run_without_an_image(shapes_model):
    model = shapes_model
    text_only = model(None, QUESTION)
    torch.testing.assert_close(model(QUESTION), text_only)
    logits, cache = model.run_with_cache(QUESTION)
    torch.testing.assert_close(logits, text_only)
    assert cache.inputs.pixel_values is None and cache.inputs.image_span is None
    answer = model.generate(None, QUESTION, max_new_tokens=4)
    assert model.generate(QUESTION, max_new_tokens=4).endswith(answer.text)
    both = model.generate([QUESTION, "what shape is it ?"], max_new_tokens=4)
    assert isinstance(both, list) and both[0].endswith(answer.text)
    trace = model.trace(QUESTION, max_new_tokens=2, progress=False)
    assert trace.settings["has_image"] is False


def test_a_lone_image_path_is_not_taken_for_a_prompt(shapes_model, red, tmp_path):
    model = shapes_model
    with pytest.raises(PromptError, match="a string alone is a prompt"):
        model("photo.png")  # not there yet, but a path all the same
    path = tmp_path / "my scene.PNG"
    red.save(path, format="PNG")
    with pytest.raises(PromptError, match=re.escape(f"{model.generate.__name__}('{path}'")):
        model.generate(str(path))
    with pytest.raises(PromptError, match="a string alone is a prompt"):
        model.run_with_cache([QUESTION, str(path)])
    with pytest.raises(PromptError, match="prompt=None: pass a prompt"):
        model(path)  # a Path is always an image
    # with a prompt, or as image=, the path is the image
    torch.testing.assert_close(model(str(path), QUESTION), model(QUESTION, image=str(path)))
    assert isinstance(model(QUESTION, image=Image.open(path)), torch.Tensor)


# -- 3. TransformerLens's keywords, and test_prompt ----------------------------------------------
def test_transformer_lens_test_prompt_runs_unmodified(shapes_model, capsys):
    model = shapes_model
    utilities.test_prompt(QUESTION, "red", model)
    printed = capsys.readouterr().out
    logits = model(QUESTION)[0, -1]  # text only: test_prompt has no image argument
    red_id = model.to_single_token("red")
    rank = int((logits > logits[red_id]).sum())
    assert "Tokenized prompt: [' <s>', ' user', ' :', ' what'" in printed
    assert "Tokenized answer: [' red']" in printed
    assert f"Rank: {rank:<8} Logit: {logits[red_id].item():5.2f}" in printed
    assert f"Ranks of the answer tokens: [(' red', {rank})]" in printed
    top = model.to_string(logits.argmax())
    assert f"Top 0th token. Logit: {logits.max().item():5.2f}" in printed and f"|{top}|" in printed
    utilities.test_prompt(QUESTION, ["red", "blue"], model)
    assert "Tokenized answers: [[' red'], [' blue']]" in capsys.readouterr().out


def test_prepend_bos_false_tokenizes_the_text_as_given(shapes_model, red):
    model = shapes_model
    bos = model.tokenizer.bos_token_id
    templated = model.to_tokens(QUESTION)
    assert templated[0, 0] == bos
    torch.testing.assert_close(model.to_tokens(QUESTION, prepend_bos=True), templated)
    raw = model.tokenizer.encode(QUESTION, add_special_tokens=False)
    assert model.to_tokens(QUESTION, prepend_bos=False)[0].tolist() == raw
    assert model.to_tokens(QUESTION, chat_template=False)[0].tolist() == [bos, *raw]
    no_bos = model.to_tokens(QUESTION, chat_template=True, prepend_bos=False)
    assert no_bos[0].tolist() == templated[0, 1:].tolist()
    assert model.to_str_tokens(" red", prepend_bos=False) == [" red"]
    assert model.to_str_tokens([" red", " blue"], prepend_bos=False) == [[" red"], [" blue"]]
    plain = torch.tensor([raw])
    torch.testing.assert_close(model(QUESTION, prepend_bos=False), model(plain))
    # with an image: the BOS goes, the template and image stay
    imaged = model.to_tokens(QUESTION, image=red, chat_template=True, prepend_bos=False)
    assert imaged.inputs.image_mask[0, 2] and imaged.shape[1] == templated.shape[1] + 63
    with pytest.raises(PromptError, match="without the chat template it must place each"):
        model.to_tokens(QUESTION, image=red, prepend_bos=False)


def test_prepend_bos_true_needs_a_bos_token(shapes_model, monkeypatch):
    no_bos = property(lambda self: None)  # the tokenizer finds its special tokens by __getattr__
    monkeypatch.setattr(type(shapes_model.tokenizer), "bos_token_id", no_bos, raising=False)
    with pytest.raises(ConfigError, match="has no BOS token"):
        shapes_model.to_tokens(QUESTION, prepend_bos=True)


def test_prepend_bos_as_a_second_positional_gets_a_clear_error(shapes_model, unchecked):
    with pytest.raises(ConfigError, match="pass prepend_bos=False by keyword"):
        shapes_model.to_tokens(QUESTION, False)
    with pytest.raises(ConfigError, match="pass prepend_bos=True by keyword"):
        shapes_model.to_str_tokens(QUESTION, True)


def test_padding_side(shapes_model):
    model = shapes_model
    prompts = [QUESTION, "what shape is the circle on the left ?"]
    left = model.to_tokens(prompts, padding_side="left")
    assert left.inputs.attention_mask[0, 0] == 0
    with pytest.raises(ConfigError, match="pads batches of prompts on the left"):
        model.to_tokens(prompts, padding_side="right")
    with pytest.raises(ConfigError, match="pads batches of prompts on the left"):
        model(prompts, padding_side="right")
    assert model.to_tokens([QUESTION, QUESTION], padding_side="right").shape[0] == 2  # no padding
    with pytest.raises(ConfigError, match="padding_side='middle'"):
        model(QUESTION, padding_side="middle")
    # generation left-pads a batch of prompts, as TransformerLens does, whatever is asked
    assert len(model.generate(prompts, max_new_tokens=2, padding_side="right")) == 2
    with pytest.raises(ConfigError, match="attention_mask"):
        model.generate(model.to_tokens(QUESTION).as_subclass(torch.Tensor), padding_side="left")


def test_attention_mask_marks_the_padding_of_plain_tokens(shapes_model):
    model = shapes_model
    ids = model.to_tokens(QUESTION).as_subclass(torch.Tensor)
    pad = model.tokenizer.pad_token_id
    padded = torch.cat([torch.full((1, 3), pad), ids], dim=1)
    mask = (torch.arange(padded.shape[1]) >= 3).long()[None]
    torch.testing.assert_close(
        model(padded, attention_mask=mask)[:, -1], model(ids)[:, -1], atol=1e-4, rtol=0
    )
    alone = model.generate(ids, max_new_tokens=5)
    from_padded = model.generate(padded, attention_mask=mask, max_new_tokens=5)
    assert from_padded[0, 3:].tolist() == alone[0].tolist()
    with pytest.raises(ConfigError, match="for plain token ids"):
        model(QUESTION, attention_mask=mask)
    with pytest.raises(PromptError, match="0s and 1s of the token ids' shape"):
        model(ids, attention_mask=mask)


def test_loss_per_token_and_stop_at_layer(shapes_model, red):
    model = shapes_model
    tokens = model.to_tokens(QUESTION, image=red)
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    image_targets = tokens.inputs.image_mask[:, 1:]
    assert per_token.shape == (1, tokens.shape[1] - 1)
    assert per_token[image_targets].abs().max() == 0
    loss = model(tokens, return_type="loss")
    torch.testing.assert_close(per_token[~image_targets].mean(), loss)
    cached_loss, cache = model.run_with_cache(tokens, return_type="loss")
    torch.testing.assert_close(cached_loss, loss)
    hooked_logits, hooked_loss = model.run_with_hooks(tokens, return_type="both")
    torch.testing.assert_close(hooked_loss, loss)
    resid = model(QUESTION, image=red, stop_at_layer=3)
    torch.testing.assert_close(resid, cache["blocks.3.hook_resid_pre"])
    torch.testing.assert_close(model(tokens, stop_at_layer=-1), cache["blocks.7.hook_resid_pre"])
    with pytest.raises(LayerIndexError, match="stop_at_layer=8"):
        model(tokens, stop_at_layer=8)
    with pytest.raises(ConfigError, match="residual stream"):
        model(tokens, stop_at_layer=2, return_type="loss")


def test_a_left_padded_row_has_the_loss_it_has_alone(shapes_model, red):
    """A pad position predicts nothing: the first real token of a left-padded row is not a
    target (as in TransformerLens, which needs both positions unmasked)."""
    model = shapes_model
    prompts = [QUESTION, "describe the picture in detail , please , with every shape"]
    batch = model.prepare([red, red], prompts)
    assert not batch.attention_mask[0].all()  # row 0 is padded on the left
    padded = model(inputs=batch, return_type="loss", loss_per_token=True)
    for row, prompt in enumerate(prompts):
        alone = model(red, prompt, return_type="loss", loss_per_token=True)
        torch.testing.assert_close(padded[row].sum(), alone[0].sum(), rtol=1e-4, atol=1e-4)
        assert (padded[row] != 0).sum() == (alone[0] != 0).sum()


def test_other_transformer_lens_keywords_are_refused_by_name(shapes_model, red):
    model = shapes_model
    refusals = [
        (lambda: model(QUESTION, image=red, start_at_layer=2), "start_at_layer"),
        (lambda: model.run_with_cache(QUESTION, pixel_values=torch.zeros(1)), "pixel_values"),
        (lambda: model.generate(QUESTION, freq_penalty=0.5), "freq_penalty=0.5"),
        (lambda: model.generate(QUESTION, repetition_penalty=1.2), "repetition_penalty"),
        (lambda: model.generate(QUESTION, return_cache=True), "return_cache"),
        (lambda: model.to_tokens(QUESTION, move_to_device=False), "move_to_device"),
        (lambda: model.to_tokens(QUESTION, truncate=True), "never truncates"),
        (lambda: model.generate(QUESTION, names_filter="x"), "names_filter"),
        (lambda: model(QUESTION, max_new_token=3), "takes no argument max_new_token=3"),
        (lambda: model.run_with_hooks(QUESTION, fwd_hook=[]), r"help\(model.run_with_hooks\)"),
    ]
    for call, message in refusals:
        with pytest.raises(ConfigError, match=message) as raised:
            call()
        assert not isinstance(raised.value, TypeError)
    # TransformerLens's values that ask for nothing are taken
    greedy = model.generate(QUESTION, max_new_tokens=3)
    same = model.generate(
        QUESTION, max_new_tokens=3, freq_penalty=0.0, use_past_kv_cache=False, truncate=False
    )
    assert same == greedy
    _, cache = model.run_with_cache(QUESTION, return_cache_object=False, names_filter="hook_embed")
    assert isinstance(cache, dict)


# -- 4. what generate returns --------------------------------------------------------------------
def test_generate_returns_what_transformer_lens_returns(shapes_model, red):
    model = shapes_model
    tokens = model.to_tokens(QUESTION, image=red)
    mine = model.generate(red, QUESTION, max_new_tokens=5)
    assert isinstance(mine, Generation)  # mmlens's (image, prompt) call
    assert isinstance(model.generate(inputs=tokens.inputs, max_new_tokens=5), Generation)
    out = model.generate(tokens, max_new_tokens=5)  # tokens in, tokens out
    assert type(out) is torch.Tensor and out.shape == (1, tokens.shape[1] + len(mine.token_ids))
    assert out[0, : tokens.shape[1]].tolist() == tokens[0].tolist()
    assert out[0, tokens.shape[1] :].tolist() == mine.token_ids
    text = model.generate(QUESTION, image=red, max_new_tokens=5)  # text in, text out
    assert text == model.tokenizer.decode(out[0], skip_special_tokens=True)
    assert text.startswith("user : what colour") and text.endswith(mine.text)
    assert model.generate(tokens, max_new_tokens=5, return_type="generation") == mine
    assert model.generate(QUESTION, image=red, max_new_tokens=5, return_type="tokens").equal(out)
    with pytest.raises(ConfigError, match="return_type='text'"):
        model.generate(QUESTION, return_type="text")
    eos_early = model.generate(tokens, max_new_tokens=5, eos_token_id=mine.token_ids[0])
    assert eos_early.shape[1] == tokens.shape[1] + 1
    with pytest.raises(ConfigError, match="eos_token_id=99"):
        model.generate(tokens, eos_token_id=99)
