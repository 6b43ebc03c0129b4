# %% [markdown]
# # mmlens the TransformerLens way
#
# If you know TransformerLens, you know mmlens: the same hook names, `run_with_cache`,
# `run_with_hooks`, cache methods and TransformerLens's own `patching` functions, with an image
# in the input. The one new step: `model.to_tokens(prompt, image=...)` gives tokens that carry
# their image, so every function that takes tokens runs the image too. On the shipped
# `mmlens/shapes` model (swap the `load` line for LLaVA-1.5-7B); figures are saved here.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from transformer_lens import patching, utilities

import mmlens
from mmlens.analyses.attention import attention_page, plot_image_attention
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

model = mmlens.load("mmlens/shapes")
print(model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads, model.W_U.shape)

question = "what colour is the circle ?"
red = draw_scene(Scene((SceneObject("circle", "red", "large", "left"),)))
blue = draw_scene(Scene((SceneObject("circle", "blue", "large", "left"),)))
clean, corrupted = model.to_tokens(question, image=red), model.to_tokens(question, image=blue)
str_tokens = model.to_str_tokens(clean)
print(len(str_tokens), str_tokens[:5], str_tokens[-8:])  # image positions named by patch

# %% [markdown]
# ## The cache
# `utilities.get_act_name` names work, and so do the cache's methods. The residual decomposition has
# the image as its own component ("image", at image positions; "embed" is the text's token
# embeddings), so the parts add up to the residual everywhere. Below: direct logit attribution of
# the answer ("red" vs "blue") at the last position, where the image arrives through attention.

# %%
logits, cache = model.run_with_cache(clean)
print(cache[utilities.get_act_name("resid_post", 3)].shape)
red_id, blue_id = model.to_single_token("red"), model.to_single_token("blue")
direction = model.W_U[:, red_id] - model.W_U[:, blue_id]
parts, labels = cache.decompose_resid(apply_ln=True, pos_slice=-1, return_labels=True)
weight = model.adapter.final_norm().weight  # the final norm's weight is not folded into W_U
attribution = (parts[:, 0] * weight) @ direction
for label, value in zip(labels, attribution.tolist(), strict=True):
    print(f"{label:>12} {value:+.2f}")
print(
    "sum",
    attribution.sum().item(),
    "= logit difference",
    (logits[0, -1, red_id] - logits[0, -1, blue_id]).item(),
)

# %% [markdown]
# ## TransformerLens's patching functions, unmodified
# They call `model.run_with_hooks(corrupted_tokens, ...)`; the tokens bring the blue image.

# %%


def metric(logits):
    return logits[0, -1, red_id] - logits[0, -1, blue_id]


resid = patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2), width_ratios=[3, 1])
left.imshow(resid.detach().numpy(), aspect="auto", cmap="RdBu", vmin=-8, vmax=8)
left.set_xlabel("position (image patches, then the question)")
left.set_ylabel("block")
right.imshow(heads.detach().numpy(), cmap="RdBu", vmin=-8, vmax=8)
right.set_xlabel("head")
figure.savefig("tl_patching.png")
best = resid.argmax(dim=1)
for block, position in enumerate(best.tolist()):
    value = resid[block, position].item()
    print(f"block {block}: patching {str_tokens[position]!r} restores most ({value:+.2f})")

# %% [markdown]
# ## Hooks
# A hook function sees `hook.name` as you registered it. Here: zero-ablate the image at the
# input of block 2 and watch the answer.

# %%


def ablate_image(activation, hook):
    print("in", hook.name, "layer", hook.layer())
    activation[:, clean.inputs.image_mask[0]] = 0
    return activation


ablated = model.run_with_hooks(clean, fwd_hooks=[("blocks.2.hook_resid_pre", ablate_image)])
print("answer with the image:", model.tokenizer.decode(logits[0, -1].argmax()))
print("image ablated at block 2:", model.tokenizer.decode(ablated[0, -1].argmax()))
print("loss on the question's tokens:", model(clean, return_type="loss").item())

# %% [markdown]
# ## TransformerLens habits
# The prompt may come first with the image by keyword, a prompt alone runs without an image
# (the language model's answer, for comparing it with the image's), `generate` returns what it
# was given (text for a prompt, tokens for tokens; `model.generate(image, prompt)` keeps giving
# a `Generation`), and TransformerLens's keywords such as `prepend_bos` mean what they mean
# there, so `utilities.test_prompt` runs unmodified (text only: it takes no image).

# %%
print(model(question, image=red).shape, model.generate(question, image=red, max_new_tokens=5))
print("without the image:", model.generate(question, max_new_tokens=5))
print(model.to_str_tokens(" red", prepend_bos=False))  # a piece to append: no BOS, no template
utilities.test_prompt(question, "red", model)

# %% [markdown]
# ## Where heads look, and sampling

# %%
with open("attention.html", "w") as page:
    page.write(attention_page(model, cache, block=3))  # offline, image positions named by patch
plot_image_attention(cache, block=3).savefig("image_attention.png")
caption = "please describe this image in detail ."
for seed in (0, 1):
    print(
        model.generate(
            red, caption, max_new_tokens=30, do_sample=True, temperature=2.0, seed=seed
        ).text
    )
print(model.generate(caption, image=red, max_new_tokens=30))  # text in, text out
