# %% [markdown]
# # The paper's analyses in one pass
#
# Token probabilities, JS divergence, stages, skip experiments, feature trajectories and the
# LVLM-vs-LLM comparison, on the shipped `mmlens/shapes` model (the same code runs on
# LLaVA-1.5-7B: swap the `load` line and the image). The scene breaks the model's training
# priors: a *blue* triangle (triangles were almost always green) and a cross *without* a circle
# (crosses almost always came with one), so hallucinated words are known exactly.
# Figures are saved in the working directory.

# %%
import mmlens
from mmlens.analyses import compare_llm, divergence, skip, stages, token_probs, trajectories
from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.zoo.shapes.scenes import SHAPES, Scene, SceneObject, draw_scene

model = mmlens.load("mmlens/shapes")
scene = Scene(
    (
        SceneObject("triangle", "blue", "large", "left"),
        SceneObject("cross", "orange", "large", "right"),
    )
)
image = draw_scene(scene)
prompt = "Please describe this image in detail."
trace = model.trace(
    image,
    prompt,
    max_new_tokens=40,
    rivals=["green", "blue", "circle", "cross"],
    keep_features=True,
)
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

# %% Skip experiments (Fig. 5): the paper's skip.1-3 where the stages allow, plus our own sets
objects = ObjectVocabulary.from_words(SHAPES)
result = skip.skip_experiments(
    model,
    image,
    prompt,
    stages=found,
    extra={"last block": [model.n_blocks - 1], "blocks 3-5": [3, 4, 5]},
    max_new_tokens=40,
    truth=scene.shapes,
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
with_image, text_only = compare_llm.image_and_text_traces(model, image, prompt, max_new_tokens=20)
print(compare_llm.stage_comparison(with_image, text_only))
compare_llm.plot_comparison(with_image, text_only).savefig("compare.png")
