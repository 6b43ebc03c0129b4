# %% [markdown]
# # Feature trajectories across images (paper Fig. 7)
#
# One one-word question over many images; the features of the first (only) answer token at every
# layer, mapped to 2-D. Real photographs that ship with scikit-image, scikit-learn and matplotlib,
# plus scenes like the shipped model's training data. (Photographs are far from what
# `mmlens/shapes` has seen: its answers on them are guesses, which is itself worth looking at.)

# %%
import random

import matplotlib.cbook
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

import mmlens
from mmlens.analyses.stages import layer_groups, summarize_stages, token_stages
from mmlens.analyses.trajectories import embed_features, first_token_features, plot_trajectories
from mmlens.zoo.shapes.scenes import draw_scene, random_scene

photos = {
    "astronaut": data.astronaut(),
    "chelsea": data.chelsea(),
    "coffee": data.coffee(),
    "flower": load_sample_image("flower.jpg"),
    "grace_hopper": Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")),
}
rng = random.Random(0)
scenes = {f"scene {i}": draw_scene(random_scene(rng), rng) for i in range(7)}
images = {**photos, **scenes}

model = mmlens.load("mmlens/shapes")
question = "how many objects are there ?"
traces = {
    name: model.trace(image, question, max_new_tokens=1, keep_features=True, progress=False)
    for name, image in images.items()
}
for name, trace in traces.items():
    print(f"{name:>12}: {trace.text}")

# %% [markdown]
# Colour the layers by the stages detected on these traces, then map with the default (PCA +
# seeded t-SNE), PCA alone, and the paper's settings.

# %%
found = summarize_stages([token_stages(trace) for trace in traces.values()])
first = next(iter(traces.values()))
groups = layer_groups(first, found)
features = first_token_features(list(traces.values()))
for method in ("tsne", "pca", "paper"):
    result = embed_features(
        features,
        layers=first.layers.tolist(),
        groups=groups,
        method=method,
        kind="images",
        item_labels=list(traces),
    )
    print(f"{method}: trustworthiness {result.trustworthiness:.3f}")
    plot_trajectories(result).savefig(f"images_{method}.png")
