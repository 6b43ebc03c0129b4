# %% [markdown]
# # One experiment across model families
#
# The paper studied LLaVA-1.5-7B. Do its stages (rapid evolution, stabilisation, mutation) hold
# in newer families? mmlens runs the same code on LLaVA-1.5 (llava-hf and the original
# haotian-liu/LLaVA format), LLaVA-NeXT, Qwen2.5-VL and Gemma 3: hooks, traces, analyses, the
# report and the CLI are family-agnostic, and every adapter is tested equal to `transformers`.
#
# **On a GPU machine**, fetch the weights yourself (mmlens never downloads), then the commands are
# the same for every family:
#
# ```bash
# hf download llava-hf/llava-1.5-7b-hf
# hf download llava-hf/llava-v1.6-mistral-7b-hf
# hf download Qwen/Qwen2.5-VL-7B-Instruct
# hf download google/gemma-3-4b-it
# for model in llava-hf/llava-1.5-7b-hf llava-hf/llava-v1.6-mistral-7b-hf \
#              Qwen/Qwen2.5-VL-7B-Instruct google/gemma-3-4b-it; do
#   mmlens report photo.jpg --model $model --device cuda --dtype bfloat16 \
#     --max-new-tokens 128 --out "report-${model##*/}"
# done
#
# # Original LLaVA-1.5 (liuhaotian/llava-v1.5-7b) names its CLIP tower by hub id; its weights
# # are pickles, which mmlens never opens: convert them to safetensors once (README, "Model
# # families"), then write a llava-hf checkpoint, or load it directly with vision_tower=...
# hf download liuhaotian/llava-v1.5-7b --local-dir llava-v1.5-7b
# hf download openai/clip-vit-large-patch14-336 --local-dir clip-vit-large-patch14-336
# mmlens convert llava-v1.5-7b llava-v1.5-7b-hf --vision-tower clip-vit-large-patch14-336
# mmlens report photo.jpg --model llava-v1.5-7b-hf --device cuda --dtype bfloat16
#
# # A whole benchmark, any family: resumable, sharded (torchrun for several GPUs)
# mmlens run pope --data coco_pope_random.json --images val2014/ \
#   --model Qwen/Qwen2.5-VL-7B-Instruct --device cuda --dtype bfloat16 --out run-qwen
# mmlens link run-qwen --out link-qwen
# ```
#
# The Python below does the same for every model named in `MMLENS_MODELS` (comma-separated).
# **Here (no GPU, no weights) it runs on tiny random stand-ins** of each family, built in code:
# their numbers mean nothing; the pipeline is the one you will run.

# %%
import os
import tempfile
from pathlib import Path

import torch
from skimage import data  # real photographs that ship with scikit-image

import mmlens
from mmlens.analyses import skip, stages
from mmlens.zoo.tiny_gemma3 import build_tiny_gemma3
from mmlens.zoo.tiny_next import build_tiny_llava_next
from mmlens.zoo.tiny_original import build_tiny_original_llava
from mmlens.zoo.tiny_qwen import build_tiny_qwen2_5_vl

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32
named = [name for name in os.environ.get("MMLENS_MODELS", "").split(",") if name]
if named:
    models = {name: mmlens.load(name, device=DEVICE, dtype=DTYPE) for name in named}
else:
    print("No MMLENS_MODELS set: using tiny random stand-ins of each family.")
    root = Path(tempfile.mkdtemp())
    original = build_tiny_original_llava(root / "original")
    models = {
        "LLaVA-1.5, original format": mmlens.load(original.original, vision_tower=original.tower),
        "LLaVA-NeXT": mmlens.load(build_tiny_llava_next(root / "next")),
        "Qwen2.5-VL": mmlens.load(build_tiny_qwen2_5_vl(root / "qwen")),
        "Gemma 3": mmlens.load(build_tiny_gemma3(root / "gemma3")),
    }

# %% [markdown]
# Where the image goes differs by family, and mmlens reads it from the input ids: LLaVA-1.5 has
# a fixed block of patch tokens, LLaVA-NeXT any-resolution tiles with a newline token per row,
# Qwen2.5-VL one token per 2x2 merged patches at the image's own resolution, Gemma 3 a fixed
# number of pooled soft tokens. `patch_grid` says whether those tokens form one grid (the
# attention and region-patching views need one).

# %%
image = data.chelsea()  # 300 x 451: not square, so tiles and resolutions differ
prompt = "Please describe this image in detail."
for name, model in models.items():
    inputs = model.prepare(image, prompt)
    print(
        f"{name:28} {type(model.adapter).__name__:22} {model.n_blocks:3} blocks, "
        f"{int(inputs.image_mask.sum()):5} image positions, patch grid {inputs.patch_grid()}"
    )

# %% [markdown]
# The paper's analysis, unchanged for every family: trace the generation, find the critical
# and mutation layers, and compare skipping the mutation layers with skipping a block set of
# our own.

# %%
max_new_tokens = 128 if named else 12
for name, model in models.items():
    trace = model.trace(image, prompt, max_new_tokens=max_new_tokens, progress=False)
    found = stages.trace_stages(trace)
    print(f"\n{name}: {trace.text!r}")
    print(f"  critical layer {found.critical_layer}, mutation layers {found.mutation_layers}")
    plan = skip.skip_plan(found, model.n_blocks)
    extra = {"middle": [model.n_blocks // 2]}
    table = skip.skip_experiments(
        model, image, prompt, stages=found, extra=extra, max_new_tokens=max_new_tokens
    )
    print(table[["name", "skip_blocks", "similarity"]].to_string(index=False))
    assert set(table.name) == {"original", "middle", *plan}
