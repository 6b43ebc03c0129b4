# %% [markdown]
# # The paper's analyses in one pass
#
# Token probabilities, JS divergence, stages, skip experiments, feature trajectories and the
# LVLM-vs-LLM comparison, on a tiny random LLaVA built in code (the same code runs on
# LLaVA-1.5-7B: swap the `load` line). A random model shows no real stages; the point here is
# the API. Figures are saved next to this script's working directory.

# %%
import tempfile

import numpy as np
from mmlens.analyses import compare_llm, divergence, skip, stages, token_probs, trajectories
from mmlens.analyses.hallucination import ObjectVocabulary

import mmlens
from mmlens.zoo.tiny import TinyLlavaSpec, build_tiny_llava

model = mmlens.load(build_tiny_llava(tempfile.mkdtemp(), TinyLlavaSpec(n_blocks=8)))
image = np.zeros((64, 64, 3), dtype=np.uint8)
image[16:48, 16:48] = (30, 60, 220)
prompt = "Please describe this image in detail."
trace = model.trace(image, prompt, max_new_tokens=12, rivals=["dog", "sheep"], keep_features=True)
print(trace.text)

# %% Token level (Fig. 2 / 3)
print(token_probs.token_probabilities(trace).head())
print(token_probs.late_layer_candidates(trace).head())
token_probs.plot_token_probabilities(trace, candidates="paper").savefig("token_probs.png")
token_probs.plot_rivals(trace).savefig("rivals.png")
with open("topk_view.html", "w") as page:
    page.write(token_probs.topk_view(trace))

# %% Distribution level (Fig. 4)
print(divergence.jsd_matrix(trace).round(3).iloc[:4, :6])
divergence.plot_jsd_heatmap(trace).savefig("jsd.png")

# %% Stages
table = stages.token_stages(trace)
found = stages.trace_stages(trace)
print(table[["token", "critical_layer", "prob_rise_layer", "mutation_layers"]])
print("critical layer", found.critical_layer, "mutation layers", found.mutation_layers)
stages.plot_stages(trace).savefig("stages.png")

# %% Skip experiments (Fig. 5)
objects = ObjectVocabulary.from_words(["dog", "sheep", "cat", "ball", "tree", "car"])
plan = stages.TraceStages(2, (6,), 0, 0.0, {}, {}) if found.critical_layer is None else found
result = skip.skip_experiments(
    model,
    image,
    prompt,
    stages=plan,
    extra={"block 0": [0]},
    max_new_tokens=12,
    truth=["ball"],
    vocabulary=objects,
)
print(result[["name", "skip_blocks", "similarity", "token_edit_distance", "hallucinated"]])
with open("skips.html", "w") as page:
    page.write(skip.skip_html(result))

# %% Feature level (Fig. 6)
maps = trajectories.trace_trajectories(trace, groups=stages.layer_groups(trace, found))
print("t-SNE trustworthiness", round(maps.trustworthiness, 3))
trajectories.plot_trajectories(maps).savefig("trajectories.png")

# %% LVLM vs LLM (section 6)
with_image, text_only = compare_llm.image_and_text_traces(model, image, prompt, max_new_tokens=8)
print(compare_llm.stage_comparison(with_image, text_only))
compare_llm.plot_comparison(with_image, text_only).savefig("compare.png")
