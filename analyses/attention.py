"""Attention over image and text positions, readable by a person: image positions named by
their patch (row, column), and each head's attention to the image drawn as the image grid.

Both read a cache (`HookedLVLM.run_with_cache`); block numbers are block indices (the pattern
of block b reads layer b).
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.cache import LVLMActivationCache
from mmlens.errors import ConfigError
from mmlens.html import circuitsvis_page
from mmlens.inputs import grid_positions
from mmlens.model import HookedLVLM


def _pattern(cache: LVLMActivationCache, block: int, row: int) -> np.ndarray:
    name = f"blocks.{block}.attn.hook_pattern"
    if name not in cache.cache_dict:
        raise ConfigError(f"The cache has no {name}; run run_with_cache without dropping it.")
    pattern = cache[name]
    pattern = pattern[row] if cache.has_batch_dim else pattern
    return pattern.detach().float().cpu().numpy()  # [head, query, key]


def attention_page(model: HookedLVLM, cache: LVLMActivationCache, block: int, row: int = 0) -> str:
    """An offline circuitsvis page of every head's attention in `block`, image positions
    labelled "<image r,c>" (padding left out)."""
    real = cache.inputs.attention_mask[row].bool().cpu().numpy()
    inputs = cache.inputs
    one = type(inputs)(
        input_ids=inputs.input_ids[row : row + 1, real],
        attention_mask=inputs.attention_mask[row : row + 1, real],
        pixel_values=None,
        image_mask=inputs.image_mask[row : row + 1, real],
        text=inputs.row_texts[min(row, len(inputs.row_texts) - 1)],
    )
    tokens = model.to_str_tokens(one)
    pattern = _pattern(cache, block, row)[:, real][:, :, real]
    component = (
        f"Attention of block {block} (row {row}); image positions named by patch",
        "AttentionHeads",
        {"attention": pattern, "tokens": tokens, "maskUpperTri": True},
    )
    return circuitsvis_page([component], title=f"mmlens: attention, block {block}")


def image_attention(
    cache: LVLMActivationCache, block: int, query: int = -1, row: int = 0
) -> pd.DataFrame:
    """Each head's attention from position `query` to every image patch: one row per (head,
    patch row, patch column), and the head's total attention to the image and to text."""
    pattern = _pattern(cache, block, row)[:, query]  # [head, key]
    positions = grid_positions(cache.inputs, row).cpu().numpy()
    columns = cache.inputs.patch_grid(row)[1]
    rows = []
    for head in range(pattern.shape[0]):
        to_image = float(pattern[head, positions].sum())
        for index, position in enumerate(positions):
            rows.append(
                {
                    "head": head,
                    "patch_row": index // columns,
                    "patch_col": index % columns,
                    "attention": float(pattern[head, position]),
                    "head_to_image": to_image,
                    "head_to_text": float(pattern[head].sum()) - to_image,
                }
            )
    return pd.DataFrame(rows)


def plot_image_attention(
    cache: LVLMActivationCache, block: int, query: int = -1, row: int = 0
) -> Figure:
    """One image-grid heatmap per head: where position `query` looks in the image."""
    table = image_attention(cache, block, query, row)
    heads = sorted(table["head"].unique())
    shape = (int(table.patch_row.max()) + 1, int(table.patch_col.max()) + 1)
    top = max(float(table.attention.max()), 1e-9)  # one colour scale for every head
    figure = Figure(figsize=(2.2 * len(heads), 2.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(heads)))
    for axis, head in zip(axes, heads, strict=True):
        part = table[table["head"] == head]
        grid = part.attention.to_numpy().reshape(shape)
        axis.imshow(grid, cmap="viridis", vmin=0, vmax=top)
        axis.set_title(f"head {head}: {part.head_to_image.iloc[0]:.0%} to image", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"block {block}: attention from position {query} to the image patches")
    return figure
