"""A TransformerLens user's calls on an mmlens model with images: attributes, tokens that carry
their image, loss, hooks, the cache's parts per row, and `transformer_lens.patching` unmodified
(equal to mmlens's patching and to a patch done by hand on the plain `transformers` model)."""

import pytest
import torch
from _support import load_hf
from torch.nn.functional import cross_entropy
from transformer_lens import patching as tl_patching
from transformer_lens.ActivationCache import ActivationCache

from mmlens.analyses.patching import residual_patching
from mmlens.errors import ConfigError, PromptError
from mmlens.tl_surface import patch_names
from mmlens.tokens import ImageTokens
from mmlens.zoo import shipped_models
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

QUESTION = "what colour is the circle ?"


@pytest.fixture(scope="module")
def images():
    red = draw_scene(Scene((SceneObject("circle", "red", "large", "middle"),)))
    blue = draw_scene(Scene((SceneObject("circle", "blue", "large", "middle"),)))
    return red, blue


def test_attributes_are_the_bridges(shapes_model):
    model = shapes_model
    assert model.cfg.n_layers == model.n_blocks == len(model.blocks)
    torch.testing.assert_close(model.W_U, model.adapter.unembed().weight.T)
    assert model.W_E.shape == (model.d_vocab, model.d_model) and model.b_U.shape == (model.d_vocab,)


def test_tokens_carry_their_image(shapes_model, images):
    model, (red, _) = shapes_model, images
    tokens = model.to_tokens(QUESTION, image=red)
    assert isinstance(tokens, ImageTokens) and tokens.inputs.pixel_values is not None
    torch.testing.assert_close(model(tokens), model(red, QUESTION))
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, model(red, QUESTION))
    assert type(tokens[:, :4]) is torch.Tensor  # a slice no longer fits its image
    plain = model.to_tokens(QUESTION).as_subclass(torch.Tensor)  # plain ids run as text
    torch.testing.assert_close(model(plain), model(None, QUESTION))
    with pytest.raises(PromptError, match="token ids alone"):
        model(tokens, QUESTION)
    pieces = model.to_str_tokens(tokens)
    assert pieces[3] == "<image 0,0>" and pieces[3 + 63] == "<image 7,7>" and pieces[-1] == " :"
    assert " <image>" in model.to_str_tokens(tokens, name_patches=False)  # word-level: spaced
    assert model.to_string(plain[0]).startswith("<s> user")


def test_patch_names_follow_the_grid():
    assert patch_names(4, (2, 2)) == ["<image 0,0>", "<image 0,1>", "<image 1,0>", "<image 1,1>"]
    grid = patch_names(577, (24, 24))
    assert grid[:2] == ["<image cls>", "<image 0,0>"]  # CLIP with its CLS kept
    assert grid[-1] == "<image 23,23>" and patch_names(6, (2, 3))[-1] == "<image 1,2>"
    # No grid (several images, tiles with newlines), or one that does not fit: numbered.
    assert patch_names(3, None) == ["<image 0>", "<image 1>", "<image 2>"]
    assert patch_names(5, (2, 3)) == [f"<image {i}>" for i in range(5)]


def test_loss_is_next_token_cross_entropy_on_text(shapes_model, images):
    model, (red, _) = shapes_model, images
    tokens = model.to_tokens(QUESTION, image=red)
    logits, loss = model(tokens, return_type="both")
    ids, image = tokens.inputs.input_ids, tokens.inputs.image_mask
    keep = ~image[0, 1:]
    expected = cross_entropy(logits[0, :-1][keep], ids[0, 1:][keep])
    torch.testing.assert_close(loss, expected)
    assert model(tokens, return_type=None) is None
    with pytest.raises(ConfigError, match="return_type"):
        model(tokens, return_type="probs")


def test_hooks_can_outlive_their_context(shapes_model, images):
    model, (red, _) = shapes_model, images
    calls = []
    hook = ("blocks.0.hook_resid_post", lambda act, hook: calls.append(1))
    with model.hooks(fwd_hooks=[hook], reset_hooks_end=False):
        model(red, QUESTION)
    model(red, QUESTION)
    assert len(calls) == 2
    model.reset_hooks()
    model.add_hook(*hook)
    model(red, QUESTION)
    model.reset_hooks()
    model(red, QUESTION)
    assert len(calls) == 3


def test_hooks_see_the_name_they_were_registered_under(shapes_model, images):
    model, (red, _) = shapes_model, images
    seen = []
    names = ["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre", "hook_image_embeds"]
    hooks = [(name, lambda act, hook: seen.append((hook.name, hook.layer()))) for name in names[:2]]
    hooks.append((names[2], lambda act, hook: seen.append((hook.name, None))))
    model.run_with_hooks(red, QUESTION, fwd_hooks=hooks)
    assert sorted(seen, key=str) == sorted(
        [
            ("blocks.1.hook_resid_post", 1),
            ("blocks.0.hook_resid_pre", 0),
            ("hook_image_embeds", None),
        ],
        key=str,
    )


def test_a_name_filter_hook_sees_the_name_it_matched(shapes_model):
    seen = []
    model = shapes_model
    model.run_with_hooks(
        None,
        QUESTION,
        fwd_hooks=[
            (lambda n: n.endswith("hook_resid_post"), lambda a, hook: seen.append(hook.name))
        ],
    )
    assert seen == [f"blocks.{b}.hook_resid_post" for b in range(model.n_blocks)]


def test_cache_parts_per_row_and_without_batch_axis(shapes_model, images):
    model, (red, blue) = shapes_model, images
    prompts = ["what colour is it ?", QUESTION]
    _, batch = model.run_with_cache([red, blue], prompts)
    name = "blocks.2.hook_resid_post"
    for row, (image, prompt) in enumerate(zip([red, blue], prompts, strict=True)):
        _, alone = model.run_with_cache(image, prompt)
        torch.testing.assert_close(
            batch.image_part(name)[row], alone.image_part(name)[0], atol=1e-4, rtol=0
        )
        torch.testing.assert_close(
            batch.text_part(name, row=row), alone.text_part(name)[0], atol=1e-4, rtol=0
        )
    with pytest.raises(ConfigError, match="row="):
        batch.text_part(name)  # the prompts differ in length
    _, flat = model.run_with_cache(red, QUESTION, remove_batch_dim=True)
    _, kept = model.run_with_cache(red, QUESTION)
    assert flat[name].dim() == 2 and not flat.has_batch_dim
    torch.testing.assert_close(flat.image_part(name), kept.image_part(name)[0])
    with pytest.raises(ConfigError, match="one row"):
        model.run_with_cache([red, blue], prompts, remove_batch_dim=True)


def test_transformer_lens_patching_runs_unmodified_with_images(shapes_model, images):
    model, (red, blue) = shapes_model, images
    clean, corrupted = model.to_tokens(QUESTION, image=red), model.to_tokens(QUESTION, image=blue)
    good, bad = model.to_single_token("red"), model.to_single_token("blue")

    def metric(logits):
        return logits[0, -1, good] - logits[0, -1, bad]

    _, clean_cache = model.run_with_cache(clean)
    found = tl_patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    assert found.shape == (model.n_blocks, clean.shape[-1])
    # the same cells through mmlens's own patching
    cells = {"last": -1, "image 3,4": 3 + 3 * 8 + 4}
    ours = residual_patching(
        model,
        clean.inputs,
        corrupted.inputs,
        lambda logits: float(metric(logits)),
        groups=(),
        positions={name: [position] for name, position in cells.items()},
    )
    for row in ours.itertuples():
        assert found[row.block, cells[row.group]].item() == pytest.approx(row.metric, abs=1e-4)
    # and by hand on the plain transformers model: replace block 5's input at the last position
    hf = load_hf(shipped_models()["mmlens/shapes"])
    kwargs = {k: v for k, v in clean.inputs.model_kwargs().items()}
    with torch.no_grad():
        clean_hidden = hf(**kwargs, output_hidden_states=True).hidden_states[5]
    layer = hf.model.language_model.layers[5]

    def swap(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, -1] = clean_hidden[:, -1]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    handle = layer.register_forward_pre_hook(swap, with_kwargs=True)
    try:
        with torch.no_grad():
            patched = hf(**corrupted.inputs.model_kwargs()).logits
    finally:
        handle.remove()
    assert found[5, -1].item() == pytest.approx(metric(patched).item(), abs=1e-4)


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 1.5},
        {"top_k": 5},
        {"top_p": 0.8},
        {"top_k": 10, "top_p": 0.9, "temperature": 0.7},
    ],
)
def test_sampling_is_seeded_and_equals_transformers(shapes_model, images, settings):
    model, (red, _) = shapes_model, images
    prompt = "please describe this image in detail ."
    mine = model.generate(red, prompt, max_new_tokens=20, do_sample=True, seed=7, **settings)
    again = model.generate(red, prompt, max_new_tokens=20, do_sample=True, seed=7, **settings)
    assert mine.token_ids == again.token_ids
    hf = load_hf(shipped_models()["mmlens/shapes"])
    inputs = model.prepare(red, prompt)
    torch.manual_seed(7)
    full = {"top_k": None, "top_p": None, **settings}
    out = hf.generate(**inputs.model_kwargs(), do_sample=True, max_new_tokens=20, **full)
    assert out[0, inputs.n_positions :].tolist() == mine.token_ids


def test_sampling_without_seed_follows_torch_manual_seed(shapes_model, images):
    """With `seed=None` sampling draws from torch's global generator, as transformers and
    TransformerLens do: `torch.manual_seed(n)` before each call repeats the text, and it is the
    text HF's `generate` samples after the same `manual_seed`."""
    model, (red, _) = shapes_model, images
    prompt = "please describe this image in detail ."
    texts = []
    for _ in range(2):
        torch.manual_seed(11)
        texts.append(model.generate(red, prompt, max_new_tokens=20, do_sample=True).token_ids)
    assert texts[0] == texts[1]
    torch.manual_seed(12)
    other = model.generate(red, prompt, max_new_tokens=20, do_sample=True, temperature=3.0)
    torch.manual_seed(11)
    hot = model.generate(red, prompt, max_new_tokens=20, do_sample=True, temperature=3.0)
    assert other.token_ids != hot.token_ids  # the global seed really drives the draw
    hf = load_hf(shipped_models()["mmlens/shapes"])
    inputs = model.prepare(red, prompt)
    torch.manual_seed(11)
    out = hf.generate(**inputs.model_kwargs(), do_sample=True, max_new_tokens=20, top_k=None)
    assert out[0, inputs.n_positions :].tolist() == texts[0]


def test_generate_speaks_transformer_lens(shapes_model, images):
    model, (red, _) = shapes_model, images
    prompt = "please describe this image in detail ."
    greedy = model.generate(red, prompt, max_new_tokens=6)
    text = model.generate(model.to_tokens(prompt, image=red), max_new_tokens=6, return_type="str")
    assert text.endswith(greedy.text) and text.startswith("user :")
    tokens = model.generate(red, prompt, max_new_tokens=6, return_type="tokens")
    assert tokens[0, -len(greedy.token_ids) :].tolist() == greedy.token_ids
    as_input = model.generate(
        model.to_tokens(prompt, image=red), max_new_tokens=6, return_type="input"
    )
    assert torch.equal(as_input, tokens)
    assert model.generate(red, prompt, max_new_tokens=6, return_type="input") == text
    longer = model.generate(red, prompt, max_new_tokens=40, stop_at_eos=False)
    assert len(longer.token_ids) == 40
    with pytest.raises(ConfigError, match="do_sample"):
        model.generate(red, prompt, temperature=0.5)
    with pytest.raises(ConfigError, match="temperature"):
        model.generate(red, prompt, do_sample=True, temperature=0.0)


def test_residual_decomposition_has_the_image_and_sums_to_the_residual(shapes_model, images):
    model, (red, _) = shapes_model, images
    _, cache = model.run_with_cache(red, QUESTION)
    image = cache.inputs.image_mask[0]
    resid = cache["blocks.7.hook_resid_post"]
    stack, labels = cache.decompose_resid(return_labels=True)
    assert labels[:3] == ["embed", "image", "0_attn_out"]
    torch.testing.assert_close(stack.sum(0), resid, atol=1e-4, rtol=0)
    assert stack[1][:, ~image].abs().max() == 0 and stack[0][:, image].abs().max() == 0
    # TransformerLens's own decomposition counts token embeddings where the image features are
    plain = ActivationCache.decompose_resid(cache)
    assert (plain.sum(0) - resid)[:, image].abs().max() > 1
    full, names = cache.get_full_resid_decomposition(return_labels=True)
    assert "image" in names and "bias" in names
    torch.testing.assert_close(full.sum(0), resid, atol=1e-3, rtol=0)
    # direct logit attribution, image tokens included: the normed parts sum to the final norm,
    # and through its weight (not folded into W_U here) and the unembedding to the logits
    normed = cache.decompose_resid(apply_ln=True, pos_slice=-1)
    final = cache["ln_final.hook_normalized"][:, -1]
    torch.testing.assert_close(normed.sum(0), final, atol=1e-4, rtol=0)
    attribution = (normed * model.adapter.final_norm().weight) @ model.W_U
    logits = model(red, QUESTION)[:, -1]
    torch.testing.assert_close(attribution.sum(0) + model.b_U, logits, atol=1e-3, rtol=0)


def test_bad_token_ids_get_one_clear_error(shapes_model):
    from mmlens.errors import TokenError

    with pytest.raises(TokenError, match="vocabulary is 0..49"):
        shapes_model(torch.tensor([[1, 99]]))
    with pytest.raises(PromptError, match="integer tensor"):
        shapes_model(torch.tensor([[1.5, 2.0]]))
    with pytest.raises(PromptError, match="integer tensor"):
        shapes_model(torch.ones((1, 2, 3), dtype=torch.long))
    with pytest.raises(TokenError, match="vocabulary is 0..49"):
        shapes_model.to_str_tokens(torch.tensor([[1, 99]]))
    with pytest.raises(PromptError, match="pass them alone"):
        shapes_model.to_str_tokens(shapes_model.to_tokens(QUESTION), image="photo.png")
