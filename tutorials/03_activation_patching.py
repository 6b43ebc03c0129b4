# %% [markdown]
# # Activation patching with a clean and a corrupted image
#
# Same question, two images that differ in one fact (the circle is red vs blue). We write the
# clean run's residual stream into the corrupted run, block by block, at the image positions,
# the text positions or all of them, and watch how much of the clean answer comes back
# (TransformerLens's convention: normalised logit difference, 1 = fully restored, 0 = no effect).

# %%
import mmlens
from mmlens.analyses.patching import logit_difference, residual_patching
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

model = mmlens.load("mmlens/shapes")
question = "what colour is the circle ?"
clean_image = draw_scene(
    Scene(
        (
            SceneObject("circle", "red", "large", "left"),
            SceneObject("square", "yellow", "small", "right"),
        )
    )
)
corrupted_image = draw_scene(
    Scene(
        (
            SceneObject("circle", "blue", "large", "left"),
            SceneObject("square", "yellow", "small", "right"),
        )
    )
)
clean = model.prepare(clean_image, question)
corrupted = model.prepare(corrupted_image, question)
print(
    "clean:",
    model.generate(inputs=clean, max_new_tokens=1).text,
    "| corrupted:",
    model.generate(inputs=corrupted, max_new_tokens=1).text,
)

# %% [markdown]
# The metric is the logit difference "red" - "blue" at the answer position.

# %%
metric = logit_difference(model, "red", "blue")
table = residual_patching(model, clean, corrupted, metric, hook="resid_pre")
print(table.pivot(index="block", columns="group", values="normalized").round(2))

# %% [markdown]
# Reading it: at block 0 only the image tokens differ, so patching them restores everything.
# The block where the "text" column takes over from the "image" column is where the colour has
# been moved from the image tokens into the text positions that produce the answer.

# %%
from matplotlib.figure import Figure

figure = Figure(figsize=(5, 3), layout="constrained")
axis = figure.subplots()
for group, rows in table.groupby("group"):
    axis.plot(rows.block, rows.normalized, marker="o", label=group)
axis.set_xlabel("block whose input is patched")
axis.set_ylabel("restored (normalised)")
axis.legend()
figure.savefig("patching.png")
