# %% [markdown]
# # Quickstart: load a model, trace a generation, read the per-layer table
#
# This runs on `mmlens/shapes`, the small LLaVA that ships with mmlens (no downloads). With real
# weights, pass `mmlens.load("llava-hf/llava-1.5-7b-hf", device="cuda", dtype=torch.bfloat16)`
# from your Hugging Face cache or a local folder.

# %%
import tempfile

import mmlens
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

folder = tempfile.mkdtemp()
model = mmlens.load("mmlens/shapes")
print(model.n_blocks, "blocks -> layers 0 ..", model.n_blocks, "(0 = embeddings)")

# %% [markdown]
# Any image works: a path, a PIL image or a numpy array. Here, a scene like the model's training
# data: a red square on the left and a green triangle on the right. `prepare` shows what the model
# sees.

# %%
image = draw_scene(
    Scene(
        (
            SceneObject("square", "red", "large", "left"),
            SceneObject("triangle", "green", "small", "right"),
        )
    )
)
inputs = model.prepare(image, "Please describe this image in detail.")
print(inputs.text)
print("image tokens at positions", inputs.image_span)

# %% [markdown]
# TransformerLens-style caches, with the image and text parts a slice away.

# %%
logits, cache = model.run_with_cache(inputs=inputs)
print(cache["blocks.0.hook_resid_post"].shape, cache.image_part("blocks.0.hook_resid_pre").shape)

# %% [markdown]
# `trace` generates greedily and records every layer at every step.

# %%
trace = model.trace(
    image, "what colour is the triangle ?", max_new_tokens=1, rivals=["green", "red", "blue"]
)
frame = trace.to_frame()
print(trace.text)
print(frame[["layer", "token", "prob", "entropy", "jsd", "rival_green", "rival_red"]])
trace.save(f"{folder}/trace")
assert mmlens.Trace.load(f"{folder}/trace").text == trace.text
