# %% [markdown]
# # The paper's experiment on LLaVA-1.5-7B
#
# On a machine with a GPU and the weights in your Hugging Face cache (or a local folder), set
# `MODEL = "llava-hf/llava-1.5-7b-hf"` and `DEVICE = "cuda"`. mmlens never downloads: fetch the
# weights yourself first (`hf download llava-hf/llava-1.5-7b-hf`).
#
# **Here (no GPU, no weights) the same code runs on a stand-in**: a tiny random LLaVA with the
# same architecture, built in code. Its numbers mean nothing; the point is that the pipeline is
# the one you will run.

# %%
import os
import tempfile

import torch

import mmlens
from mmlens.analyses import divergence, stages, token_probs, trajectories
from mmlens.report import ReportSettings, write_report
from mmlens.zoo.tiny import TinyLlavaSpec, build_tiny_llava

MODEL = os.environ.get("MMLENS_MODEL")  # e.g. llava-hf/llava-1.5-7b-hf
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if MODEL is None:
    print("No MMLENS_MODEL set: using a tiny random stand-in with LLaVA's architecture.")
    MODEL = str(build_tiny_llava(tempfile.mkdtemp(), TinyLlavaSpec(n_blocks=8)))
    dtype = torch.float32
else:
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
model = mmlens.load(MODEL, device=DEVICE, dtype=dtype)

# %% [markdown]
# The paper's settings: "Please describe this image in detail.", greedy, up to 256 tokens, and
# the authors' lens (`lens="paper"`: no final norm on intermediate layers) for their figures.

# %%
from skimage import data  # real photographs that ship with scikit-image

image = data.astronaut()
prompt = "Please describe this image in detail."
max_new_tokens = 256 if DEVICE == "cuda" else 16
paper = model.trace(image, prompt, max_new_tokens=max_new_tokens, lens="paper", keep_features=True)
correct = model.trace(image, prompt, max_new_tokens=max_new_tokens, lens="normed")
print(correct.text)

# %%
divergence.plot_jsd_heatmap(paper, mode="paper").savefig("paper_fig4.png")
divergence.plot_jsd_heatmap(correct).savefig("normed_fig4.png")
token_probs.plot_token_probabilities(paper, candidates="paper").savefig("paper_fig2.png")
print("critical layer (normed lens):", stages.trace_stages(correct).critical_layer)
print("critical layer (paper lens):", stages.trace_stages(paper).critical_layer)

# %% [markdown]
# Fig. 6 with the authors' t-SNE settings (embedding output dropped, MaxAbsScaler, perplexity
# 40, 2000 iterations) on the paper lens's features, whose last layer is final-normed as theirs.

# %%
paper_groups = stages.layer_groups(paper, stages.trace_stages(paper))
fig6 = trajectories.trace_trajectories(paper, groups=paper_groups, method="paper")
trajectories.plot_trajectories(fig6).savefig("paper_fig6.png")
print(f"Fig. 6 map: {len(fig6.frame)} points, trustworthiness {fig6.trustworthiness:.3f}")

# %% [markdown]
# Everything at once, as the `mmlens report` command does:

# %%
out = write_report(
    model,
    image,
    tempfile.mkdtemp() + "/report",
    ReportSettings(prompt=prompt, max_new_tokens=min(max_new_tokens, 64)),
    progress=False,
)
print("report:", out)
