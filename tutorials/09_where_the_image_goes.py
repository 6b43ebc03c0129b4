# %% [markdown]
# # Where the image goes
#
# Three experiments on how an LVLM's text positions read the image, each following published work,
# run here on the shipped model organism `mmlens/shapes` (8 blocks, 4 heads, 64 image tokens; it
# captions a small green circle as "a small green triangle", because green things were mostly
# triangles in its training data):
#
# 1. **Attention knockout**: cut the attention from the image tokens to some text positions in
#    some blocks and see what the answer loses (Geva et al. 2023; Kaduri et al. 2024; Zhang et
#    al. 2024).
# 2. **Visual attention**: how much of the predicting position's attention lands on the image,
#    block by block, and whether hallucinated words differ (Jiang et al. 2025, "Devils in middle
#    layers").
# 3. **The image tokens themselves**: the logit lens at every image patch, and ablating the image
#    tokens of one object or one region (Neo et al. 2024; Jiang et al. 2024).
#
# **On a GPU machine with LLaVA-1.5-7B** (bring the weights: `hf download
# llava-hf/llava-1.5-7b-hf`; mmlens never downloads):
#
# ```bash
# # One image: the report has visual attention, a knockout sweep and the image-token lens
# mmlens report photo.jpg --model llava-hf/llava-1.5-7b-hf --device cuda --dtype bfloat16
#
# # A benchmark with visual attention recorded, then the per-word signals
# mmlens run amber --data AMBER/data --images AMBER/image --model llava-hf/llava-1.5-7b-hf \
#   --device cuda --dtype bfloat16 --batch-size 16 --max-new-tokens 128 --visual-attention \
#   --out run-amber
# mmlens link run-amber --out link-amber  # signals.csv, separation.csv, visual_attention.csv
# ```
#
# and the knockout sweep from Python:
#
# ```python
# import torch
# import mmlens
# from mmlens.analyses.flow import knockout_sweep, plot_knockout_sweep
#
# model = mmlens.load("llava-hf/llava-1.5-7b-hf", device="cuda", dtype=torch.bfloat16)
# question = "What colour is the car?\nAnswer the question using a single word or phrase."
# sweep = knockout_sweep(model, "photo.jpg", question, "red")  # windows of 8 of the 32 blocks
# plot_knockout_sweep(sweep).savefig("knockout.png")
# ```
#
# Here everything runs on the CPU in well under a minute.

# %%
import numpy as np
import pandas as pd
import torch

import mmlens
from mmlens.ablation import image_ablation_hooks
from mmlens.analyses.ablation import plot_region_ablation, region_ablation
from mmlens.analyses.flow import knockout_sweep, plot_knockout_sweep
from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.image_lens import image_token_lens, plot_word_on_image
from mmlens.analyses.signals import plot_signal_separation, signal_separation, word_signals
from mmlens.analyses.visual_attention import (
    plot_trace_visual_attention,
    plot_visual_attention_curves,
    visual_attention_curves,
    word_visual_attention,
)
from mmlens.benchmarks import read_shapes
from mmlens.benchmarks.shapes import write_shapes_benchmark
from mmlens.cli.single import DEMO_SCENE
from mmlens.inputs import grid_positions
from mmlens.knockout import attention_knockout
from mmlens.runs import RunSettings, RunStore, run_items
from mmlens.zoo.shapes.scenes import SHAPES, Scene, SceneObject, draw_scene

pd.set_option("display.width", 120)
model = mmlens.load("mmlens/shapes")
image = draw_scene(DEMO_SCENE)  # a small green circle (left), a large red square (right)
prompt = "please describe this image in detail ."
ALL_BLOCKS = range(model.n_blocks)
print(model.generate(image, prompt, max_new_tokens=30).text)

# %% [markdown]
# ## 1. Attention knockout
#
# **The question.** Which attention edges carry the image into the answer, and in which blocks?
# Geva et al. (2023, "Dissecting recall of factual associations") introduced attention knockout
# for text models: block the last position from attending to the subject's tokens in a window of
# layers, and see where the answer's probability falls. Kaduri et al. (2024, arXiv 2411.17491)
# and Zhang et al. (2024, arXiv 2411.18620) turned it on LVLMs. In LLaVA-style 7B models they
# find the image reaches the text mostly through the middle layers, and Zhang et al. find a
# two-step route: the image flows into the question's tokens in the lower layers, and from there
# to the last position in the middle layers, with the direct image -> last edge mattering little.
#
# `attention_knockout(model, inputs, edges, layers)` blocks edges "source->target" (the target's
# queries stop reading the source's keys) for every forward inside it. Groups: `image`,
# `prompt` (all text before the last position, BOS and the chat template included), `last`
# (the position that predicts the next token), `generated`, a region `region:R,C/N`, or explicit
# positions.
#
# **By hand, on the hallucination.** Feed the caption up to "a small green" so that the last
# position is the one predicting the hallucinated shape, and cut what it reads from the image in
# every block.

# %%
shapes = ["triangle", "circle", "square"]
shape_ids = [model.to_single_token(word) for word in shapes]
# answer_start: text the model is taken to have said already, after the chat template
forced = model.prepare(image, prompt, answer_start=" there are two objects . a small green")


def shape_probs(inputs):
    with torch.no_grad():
        probs = torch.softmax(model(inputs=inputs)[0, -1].double(), -1)
    return {
        f"P({word})": float(probs[token]) for word, token in zip(shapes, shape_ids, strict=True)
    }


rows = {"no knockout": shape_probs(forced)}
for edges in (["image->last"], ["image->prompt"], ["image->last", "image->prompt"]):
    with attention_knockout(model, forced, edges, ALL_BLOCKS):
        rows[" + ".join(edges)] = shape_probs(forced)
print(pd.DataFrame(rows).T.round(3).to_string())

# %% [markdown]
# The position that predicts "triangle" does read the image, and what it reads argues *against*
# the hallucination: cutting image -> last in all 8 blocks raises P(triangle) from 0.54 to 0.75
# and lowers P(circle) from 0.19 to 0.08. Cutting image -> prompt (here every text token before
# it: the instruction and the caption so far) barely matters. The "green -> triangle" prior
# lives in the text; the direct look at the image only partly resists it.
#
# Knockouts also hold during generation (KV cache included): generate inside the context.
# Cutting image -> last touches only the first step's position; adding image -> generated leaves
# the caption only what the prompt's tokens carried from the image; adding image -> prompt too
# leaves it no view of the image at all.

# %%
inputs = model.prepare(image, prompt)
for edges in (
    ["image->last"],
    ["image->last", "image->generated"],
    ["image->last", "image->generated", "image->prompt"],
):
    with attention_knockout(model, inputs, edges, ALL_BLOCKS):
        text = model.generate(image, prompt, max_new_tokens=30).text
    print(f"{' + '.join(edges):45} {text}")

# %% [markdown]
# The caption survives the first cut. With the second, the prompt's tokens carry too little: the
# caption loses the scene and falls apart. Without any view of the image the model writes "a
# small green triangle" unprompted: that is its prior.
#
# **A window sweep.** `knockout_sweep` slides a window of blocks (default: a quarter of them,
# 2 of 8 here; LLaVA-1.5: 8 of 32) and knocks out each of image -> last, image -> prompt and
# prompt -> last in it, measuring the probability of an answer at the last position. The
# question must need the image: the shapes model answers one-word questions ("what colour is
# the circle ?"); it answers "green", correctly, with P = 0.63 (runner-up: "red", 0.35).

# %%
question = "what colour is the circle ?"
sweep = knockout_sweep(model, image, question, "green", progress=False)
print(f"{sweep.attrs['metric']} without knockout: {sweep.base.iloc[0]:.3f}")
print("relative change (%) per window start:")
print(sweep.pivot(index="start", columns="edge", values="relative_change").round(1).to_string())
plot_knockout_sweep(sweep).savefig("knockout_sweep.png")

# %% [markdown]
# Any metric of the last position's logits works (`metric=`); here the wrong colour, "red" (the
# square's):

# %%
red = model.to_single_token("red")


def p_red(logits):
    return float(torch.softmax(logits[-1].double(), -1)[red])


against = knockout_sweep(model, image, question, metric=p_red, progress=False)
print(f"P(red) without knockout: {against.base.iloc[0]:.3f}")
print(against.pivot(index="start", columns="edge", values="relative_change").round(1).to_string())

# A control: one red square, a scene that follows the priors.
control = draw_scene(Scene((SceneObject("square", "red", "large", "middle"),)))
plain = knockout_sweep(model, control, "what colour is the square ?", "red", progress=False)
print(f"\ncontrol: P(red) = {plain.base.iloc[0]:.3f}; image->last knocked out, change (%):")
print(plain[plain.edge == "image->last"].set_index("start").relative_change.round(1).to_string())

# %% [markdown]
# What the tiny model shows (8 blocks, so each window is a quarter of the model):
#
# - **The direct edge carries the colour.** Knocking out image -> last in blocks 2-5 cuts
#   P(green) by 59-77 %, while image -> prompt matters only in blocks 0-1 (+24 %) and hardly
#   after: unlike Zhang et al.'s 7B models, this model does not route the image through the
#   question's tokens.
# - **Two reads compete.** In blocks 5-7 the direct read brings in the *other* object's colour:
#   knocking it out raises P(green) by 33-57 % and removes 91-100 % of P(red); knocking out
#   blocks 2-5 instead doubles P(red). The middle blocks bring in green (the circle's colour),
#   the last blocks red (the square's).
# - **On a scene that follows the priors**, the colour comes from image -> last in the last
#   blocks only (-68 % and -96 % for the last two windows).
# - **prompt -> last mirrors image -> last** in the same blocks (+58 % for P(green) in blocks
#   2-4, -73 to -76 % in blocks 5-7). A knockout removes keys and the softmax renormalizes over
#   the rest, so blocking the text likely pushes the last position's attention onto the image:
#   read these two curves together, not as independent routes.
# - **prompt -> last in blocks 0-1 gives -100 %** for both answers. Which of the prompt's words
#   does block 0 need? `attention_knockout` also takes explicit positions: cut one at a time.

# %%
asked = model.prepare(image, question)
names = model.tokenizer.convert_ids_to_tokens(asked.input_ids[0].tolist())
green = model.to_single_token("green")
one_word = {}
for position in asked.text_positions.tolist()[:-1]:  # every text position but the last
    with torch.no_grad(), attention_knockout(model, asked, [([position], "last")], [0]):
        probs = torch.softmax(model(inputs=asked)[0, -1].double(), -1)
    one_word[f"{position}:{names[position]}"] = float(probs[green])
print("P(green) with one prompt word -> last cut in block 0:")
print(pd.Series(one_word).round(4).to_string())
square_answer = model.generate(image, "what colour is the square ?", max_new_tokens=3).text
print("what colour is the square ? ->", square_answer)

# %% [markdown]
# Only "colour" matters: without it, block 0 of the last position does not learn what is asked
# and P(green) falls to 0.001. The attention sink (BOS) matters not at all, and neither does
# "circle": the model does not read which object the question names, and indeed it answers
# "green" to "what colour is the square ?" too.
#
# ## 2. Visual attention
#
# **The question.** How much of the predicting position's attention goes to the image, layer by
# layer, and do hallucinated words look at the image less? Jiang et al. (2025, "Devils in middle
# layers of large vision-language models", arXiv 2411.16724) find that in LLaVA's middle layers
# real objects receive more attention to the image than hallucinated ones, and use the visual
# attention ratio summed over blocks 5-18 (SVAR) to detect hallucinations.
#
# `trace(..., visual_attention=True)` records, per step, block and head, the share of the
# predicting position's attention on image tokens (and with `attention_regions=N`, on each of
# N x N regions of the patch grid) without keeping any attention pattern.

# %%
trace = model.trace(
    image, prompt, max_new_tokens=30, visual_attention=True, attention_regions=2, progress=False
)
plot_trace_visual_attention(trace).savefig("visual_attention_demo.png")
steps = {word: trace.tokens.index(f" {word}") for word in ("triangle", "square")}
n_prompt = inputs.n_positions
heads_mean = trace.image_attention[:, 1:].mean(-1)  # [step, layer]: layer 0 has no attention
shares = pd.DataFrame(
    {f"'{word}' (step {step})": heads_mean[step] for word, step in steps.items()},
    index=pd.Index(trace.layers[1:], name="layer"),
)
shares["every step (mean)"] = heads_mean.mean(0)
# A position attending uniformly would put (image tokens) / (positions it sees) on the image.
n_image = int(inputs.image_mask.sum())
shares[f"uniform at step {steps['triangle']}"] = n_image / (n_prompt + steps["triangle"])
print(shares.round(2).to_string())
# [layer, region], regions "r,c" in raster order: 0,0 0,1 1,0 1,1 (left half: 0,0 and 1,0)
regions = trace.region_attention[steps["triangle"], 1:].mean(1)
left = regions[:, [0, 2]].sum(1) / regions.sum(1)
print("share of the 'triangle' step's image attention on the left half, layers 1-8:", left.round(2))

# %% [markdown]
# The image is 64 of the 84 positions the "triangle" step sees, so uniform attention would give
# it 0.76. Averaged over the caption's steps the predicting position gives the image well under
# that in layers 1-2 (0.21, 0.39), about that in layers 3-4 and somewhat less in layers 5-8
# (0.54 to 0.70); the heatmap shows how much it varies from token to token. At the hallucinated
# "triangle" the share is no lower than at the correct "square": it is higher in layers 1-5
# and 7. In the last two layers about three quarters of the triangle step's image attention
# lands on the left half, where the circle is (the two halves have 32 patches each; the square,
# on the right, covers 12 and the circle 6): the model looks at the right object and still
# names it wrongly.
#
# **Over a benchmark.** Run the model over scenes of the built-in benchmark with visual attention
# recorded (`RunSettings(visual_attention=True)`, the CLI's `--visual-attention`), judge every
# object word against the scene, and compare hallucinated with correct words per layer, with
# bootstrap intervals that resample items (a caption's words are not independent).

# %%
bench = write_shapes_benchmark("shapes_bench", n_scenes=96, force=True)
captions = [item for item in read_shapes(bench) if item.task == "generative"]
settings = RunSettings(max_new_tokens=32, batch_size=8, visual_attention=True)
store = RunStore.open("runs/visual", {"tutorial": "09", **settings.identity()})
run_items(model, captions, store, settings, progress=False)
items, tokens = store.merge()
judge = ObjectVocabulary.from_words(SHAPES)
words = word_visual_attention(items, tokens, judge)
curves = visual_attention_curves(words)
plot_visual_attention_curves(curves).savefig("visual_attention_curves.png")
difference = curves[curves.group == "difference"]
print(difference[["layer", "mean", "low", "high", "n_words", "n_items"]].round(3).to_string())

# %% [markdown]
# **Which signal separates hallucinated words?** `word_signals` gives each judged object word the
# paper's mutation flag, SVAR (Jiang et al. 2025; blocks 5-18 of 32 become layers 2-5 of 8 here),
# DoLa's premature-layer JSD and contrast (Chuang et al. 2024) and DeCo's anchor confidence (Wang
# et al. 2025); `signal_separation` gives each one's AUROC (0.5 = chance; above 0.5: higher in
# hallucinated words) with intervals over items.

# %%
signals = word_signals(items, tokens, judge)
separation = signal_separation(signals)
columns = ["signal", "auroc", "low", "high", "n_hallucinated", "n_correct", "n_items"]
print(separation[columns].round(3).to_string(index=False))
plot_signal_separation(separation).savefig("signal_separation.png")
n_words, n_items = len(signals), signals.order.nunique()
print(f"{n_words} object words on {n_items} captions of a tiny model")

# %% [markdown]
# These are 202 object words (96 hallucinated, 106 correct) on 96 captions of a tiny model, so
# read the intervals, not the points:
#
# - **Visual attention does not show Jiang et al.'s pattern here.** Hallucinated words attend to
#   the image *more* in layers 5 and 7 (about +0.08, intervals above 0) and slightly less in
#   layer 3 (-0.05, interval just below 0); over the SVAR band (layers 2-5) the two directions
#   cancel and SVAR's AUROC is 0.50 (0.40-0.59). By this measure the tiny model's errors are not
#   a failure to attend to the image, as the demo scene suggested.
# - **DoLa's contrast separates best** (AUROC 0.38, interval 0.30-0.46, below 0.5: the last layer
#   gains less over DoLa's premature layer on hallucinated words), then DeCo's anchor confidence
#   (0.59, 0.51-0.67: the upper-middle layers are *more* confident in one of the final candidates
#   when the word is hallucinated, the opposite of what DeCo relies on).
# - **The mutation flag is at chance** (0.51), as tutorial 06 found for this model.
#
# ## 3. The image tokens themselves
#
# **The question.** Do the image tokens already "say" the object, and does the object word depend
# on the object's own tokens? Neo et al. (2024, arXiv 2410.07149) read LLaVA's image tokens with
# the logit lens, find the object's tokens turning into its name in the later layers, and show
# that ablating those object tokens costs far more of the model's object identification than
# ablating other tokens. Jiang et al. (2024, "Interpreting and editing vision-language
# representations", arXiv 2410.02762) use the same lens to localize objects and find that a
# hallucinated object gets little probability at any image token, which detects it.
#
# `image_token_lens(model, cache, words)` unembeds every image patch at every layer.

# %%
_, cache = model.run_with_cache(image, prompt)
lens = image_token_lens(model, cache, shapes)
scale = float(max(lens.word_probs["triangle"].max(), lens.word_probs["circle"].max()))
# one colour scale for both strips, so their colours compare
plot_word_on_image(lens, "triangle", vmax=scale).savefig("lens_triangle.png")
plot_word_on_image(lens, "circle", vmax=scale).savefig("lens_circle.png")

# Which patches hold which object: the drawn pixels, cut into the 8 x 8 patch grid.
pixels = np.asarray(image.convert("RGB"), dtype=int)
r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
n_rows, n_cols = lens.grid
side = pixels.shape[0] // n_rows


def patches(mask):
    return mask.reshape(n_rows, side, n_cols, side).any((1, 3)).ravel()


circle = patches((g > r + 40) & (g > b + 40))  # green pixels
square = patches((r > g + 40) & (r > b + 40))  # red pixels
background = ~(circle | square)
table = pd.DataFrame(
    {
        f"P({word}) on {name}": lens.word_probs[word][:, where].mean(1)
        for word in ("triangle", "circle", "square")
        for name, where in (("circle", circle), ("square", square))
    },
    index=pd.Index(lens.layers, name="layer"),
)
print(f"{circle.sum()} circle patches, {square.sum()} square patches, {background.sum()} others")
print(table.round(3).to_string())
highest = {word: round(float(probs.max()), 3) for word, probs in lens.word_probs.items()}
print("highest probability at any image token and layer:", highest)

# %% [markdown]
# The circle's 6 patches lean to "circle" from the embeddings on (0.21 on average at layer 0,
# 0.29 at layer 8, up to 0.49 at its best patch), with "square" second (0.14 to 0.28); "triangle"
# gets 0.04 or less on them and at most 0.13 anywhere. So the hallucinated word has little
# support in the image tokens, which is what Jiang et al.'s detector relies on, and the visual
# side of the model does lean to "circle". But the lens reads this small model's image tokens
# only in part: the square's 12 patches give "square" 0.04 at most on average (their top tokens
# are words like "on", "left" and "</s>"), though the model names the square correctly.
#
# **Ablation.** `region_ablation` zeroes the image tokens of each region of an N x N split (and
# of the whole image), regenerates the caption, and reports the highest probability the word
# gets at any step. The circle straddles the two left regions.

# %%
ablated = region_ablation(model, image, prompt, "triangle", per_side=2, mode="zero")
print(ablated[["region", "n_positions", "prob", "change", "text"]].round(3).to_string(index=False))
plot_region_ablation(ablated).savefig("region_ablation.png")

# %% [markdown]
# Zeroing either left region takes P(triangle) from 0.54 to 0.19 or 0.26 and the caption no
# longer says "triangle"; zeroing a right region raises it a little; zeroing the whole image
# gives the prior caption (three objects). But zeroing is a blunt, off-distribution edit: the
# new captions ("a small red circle", "a large green cross") show it does more than remove the
# circle. Neo et al.'s comparison is sharper: replace exactly the object's patches with the
# image's mean token (`image_ablation_hooks(..., mode="mean")`) and compare with as many
# background patches drawn at random; or erase the object outright, patching in the same
# positions from the scene drawn without it (`mode="patch"`).

# %%
positions = grid_positions(inputs)
without_circle = draw_scene(Scene(DEMO_SCENE.objects[1:]))  # the same scene, no circle
_, empty = model.run_with_cache(without_circle, prompt)
rng = np.random.default_rng(0)
backgrounds = [
    rng.choice(np.flatnonzero(background), circle.sum(), replace=False) for _ in range(5)
]
ablations = {  # name: (patch indices per draw, mode)
    "nothing ablated": ([], "mean"),
    "circle, mean": ([np.flatnonzero(circle)], "mean"),
    "circle, erased": ([np.flatnonzero(circle)], "patch"),
    "square, mean": ([np.flatnonzero(square)], "mean"),
    "background, mean": (backgrounds, "mean"),
}
for name, (draws, mode) in ablations.items():
    found = []
    for draw in draws or [None]:
        hooks = []
        if draw is not None:
            source = empty["blocks.0.hook_resid_pre"][0] if mode == "patch" else None
            hooks = image_ablation_hooks(inputs, positions[draw], mode, source=source)
        with model.hooks(fwd_hooks=hooks):
            ablated_trace = model.trace(
                image, prompt, max_new_tokens=30, rivals=["triangle"], progress=False
            )
        found.append((np.exp(ablated_trace.rival_logprobs[:, -1, 0].max()), ablated_trace.text))
    n_patches = len(draws[0]) if draws else 0
    p_triangle = np.mean([best for best, _ in found])
    print(f"{name:17} ({n_patches:2} patches, {len(found)} draw(s)) P(triangle) {p_triangle:.3f}")
    print(f"{'':19}{found[0][1]}")

# %% [markdown]
# Mean-ablating the circle's 6 patches takes "triangle" away (its best probability falls from
# 0.54 to 0.02); the caption still has an object on the left, now "a small red circle" (the mean
# token is not background: it averages all 64, the red square's included). Erasing the circle
# (its patches from the scene drawn without it) leaves "there is one object" (the square, which
# the model calls a circle on that scene alone too): P(triangle) 0.000.
# 6 random background patches leave the word (0.52 averaged over 5 draws). Mean-ablating the
# square's 12 patches keeps the triangle and turns the square into a second green triangle. The
# hallucinated word is triggered by the circle's own tokens, presumably their green pulling the
# text to the "green triangle" prior, which the knockouts above located in the text rather than
# in the image.
#
# **In short, on this tiny model**: the image reaches the answer through the direct image -> last
# edge (not through the question's tokens, as in 7B models); hallucinated words attend to the
# image as much as correct ones; the circle's image tokens lean to "circle", and the word
# "triangle" comes from the text's prior, triggered by those tokens.
