"""Which part of the image an object word depends on: ablate one region of the image tokens at
a time (`mmlens.ablation`) and measure the word's probability and the generated text.

For each region of the patch grid (`analyses.patching.image_regions`), plus the whole image:
the greedy caption generated with the region ablated, and how much the model still wants to say
`word`: the highest final-layer probability its first token gets at any step of that caption
(read by `trace` as a rival), and the change from the unablated run.
"""

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from mmlens.ablation import image_ablation_hooks
from mmlens.analyses.patching import image_regions
from mmlens.errors import ConfigError
from mmlens.inputs import ImageLike
from mmlens.model import HookedLVLM
from mmlens.words import first_token_id


def region_ablation(
    model: HookedLVLM,
    image: ImageLike,
    prompt: str,
    word: str,
    *,
    per_side: int = 2,
    mode: str = "zero",
    max_new_tokens: int = 20,
) -> pd.DataFrame:
    """One row per setting ("none", each region "r,c", "image"): region, n_positions, prob
    (the highest final-layer probability of `word`'s first token over the caption's steps),
    change (prob minus the unablated one), text (greedy, with the ablation), word_in_text."""
    token = first_token_id(model.tokenizer, word)
    if token is None:
        raise ConfigError(f"{word!r} has no token of its own in this model's vocabulary.")
    inputs = model.prepare(image, prompt)
    regions = image_regions(inputs, per_side)
    settings: dict[str, torch.Tensor | None] = {"none": None, **regions}
    settings["image"] = inputs.image_positions
    rows = []
    for name, positions in settings.items():
        hooks = [] if positions is None else image_ablation_hooks(inputs, positions, mode)
        with model.hooks(fwd_hooks=hooks):
            trace = model.trace(
                image, prompt, max_new_tokens=max_new_tokens, rivals=[token], progress=False
            )
        rows.append(
            {
                "region": name,
                "n_positions": 0 if positions is None else int(positions.numel()),
                "prob": float(np.exp(trace.rival_logprobs[:, -1, 0].astype(np.float64)).max()),
                "text": trace.text,
                "word_in_text": word.lower() in trace.text.lower().split(),
            }
        )
    frame = pd.DataFrame(rows)
    frame.insert(3, "change", frame.prob - frame.prob.iloc[0])
    frame.attrs.update(word=word, mode=mode, per_side=per_side)
    return frame


def plot_region_ablation(table: pd.DataFrame) -> Figure:
    """The change in the word's probability when each region is ablated, on the region grid."""
    per_side = int(table.attrs.get("per_side", 0))
    regions = table[table.region.str.contains(",")]
    if per_side * per_side != len(regions):
        raise ConfigError("This table has no full grid of regions (from region_ablation).")
    grid = np.zeros((per_side, per_side))
    for row in regions.itertuples():
        r, c = (int(v) for v in row.region.split(","))
        grid[r, c] = row.change
    limit = max(float(np.abs(grid).max()), 1e-9)
    figure = Figure(figsize=(3.6, 3.2), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit)
    for (r, c), value in np.ndenumerate(grid):
        colour = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark cells
        axis.text(c, r, f"{value:+.2f}", ha="center", va="center", fontsize=8, color=colour)
    axis.set_xticks(range(per_side))
    axis.set_yticks(range(per_side))
    word, mode = table.attrs.get("word", "?"), table.attrs.get("mode", "?")
    axis.set_title(f"P({word!r}) change, {mode}-ablating each region", fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8)
    return figure
