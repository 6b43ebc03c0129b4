# %% [markdown]
# # Quickstart: load a model, trace a generation, read the per-layer table
#
# This runs on a tiny random LLaVA built in code (no downloads). With real weights, pass
# `mmlens.load("llava-hf/llava-1.5-7b-hf", device="cuda", dtype=torch.bfloat16)` from your cache.

# %%
import tempfile

import numpy as np

import mmlens
from mmlens.zoo.tiny import build_tiny_llava

folder = tempfile.mkdtemp()
model = mmlens.load(build_tiny_llava(folder))
print(model.n_blocks, "blocks -> layers 0 ..", model.n_blocks, "(0 = embeddings)")

# %% [markdown]
# Any image works: a path, a PIL image or a numpy array. `prepare` shows what the model sees.

# %%
image = np.zeros((48, 64, 3), dtype=np.uint8)
image[10:30, 10:30] = (255, 0, 0)
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
    image, "Please describe this image in detail.", max_new_tokens=6, rivals=["dog", "sheep"]
)
frame = trace.to_frame()
print(trace.text)
print(frame[frame.step == 0][["layer", "token", "prob", "entropy", "jsd", "rival_dog"]])
trace.save(f"{folder}/trace")
assert mmlens.Trace.load(f"{folder}/trace").text == trace.text
