"""The image tokens through the logit lens: what each image position "says" at each layer.

For every image patch (in raster order over the image's patch grid) and every layer, the
residual is unembedded as the lens unembeds a generated token (final norm, then the
unembedding; Hugging Face `hidden_states` numbering, 0 = embeddings): its top tokens, and the
probability of named words (each word's first token), so one can see where "dog" appears in the
image tokens and from which layer (Neo et al. 2024; Jiang et al. 2024, "Interpreting and editing
vision-language representations"). Computed one layer at a time: nothing of size
layers x patches x vocabulary is kept.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from matplotlib.figure import Figure

from mmlens.cache import LVLMActivationCache
from mmlens.errors import ConfigError
from mmlens.inputs import grid_positions
from mmlens.lens import lens_logits, log_probs
from mmlens.model import HookedLVLM
from mmlens.recording import resid_hook_names
from mmlens.token_text import token_text_array
from mmlens.words import first_token_id


@dataclass(frozen=True)
class ImageTokenLens:
    """Per layer and image patch: the top-k tokens and the named words' probabilities."""

    layers: Int[np.ndarray, " layer"]
    grid: tuple[int, int]
    positions: Int[np.ndarray, " patch"]
    top_ids: Int[np.ndarray, "layer patch k"]
    top_tokens: np.ndarray
    top_probs: Float[np.ndarray, "layer patch k"]
    word_probs: dict[str, Float[np.ndarray, "layer patch"]]

    def __post_init__(self) -> None:
        n_layers, n_patches = len(self.layers), len(self.positions)
        if self.grid[0] * self.grid[1] != n_patches or self.top_ids.shape[:2] != (
            n_layers,
            n_patches,
        ):
            raise ValueError("grid, positions and arrays disagree on the number of patches")

    def to_frame(self) -> pd.DataFrame:
        """Tidy: one row per (layer, patch): layer, position, patch_row, patch_col, top1_token,
        top1_prob, then `p_WORD` for each named word."""
        n_layers, n_patches = self.top_ids.shape[:2]
        columns = self.grid[1]
        frame = pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_patches),
                "position": np.tile(self.positions, n_layers),
                "patch_row": np.tile(np.arange(n_patches) // columns, n_layers),
                "patch_col": np.tile(np.arange(n_patches) % columns, n_layers),
                "top1_token": self.top_tokens[..., 0].ravel().astype(object),
                "top1_prob": self.top_probs[..., 0].ravel(),
            }
        )
        for word, probs in self.word_probs.items():
            frame[f"p_{word}"] = probs.ravel()
        return frame


def image_token_lens(
    model: HookedLVLM,
    cache: LVLMActivationCache,
    words: Sequence[str] = (),
    *,
    layers: Sequence[int] | None = None,
    top_k: int = 3,
    row: int = 0,
) -> ImageTokenLens:
    """The lens at every image patch of batch row `row` of `cache` (from `run_with_cache`), at
    `layers` (default: all, 0..n_blocks), with the probability of each of `words`."""
    n_layers = model.n_blocks + 1
    chosen = list(range(n_layers)) if layers is None else [int(layer) for layer in layers]
    if not chosen or any(not 0 <= layer < n_layers for layer in chosen):
        raise ConfigError(f"layers={list(layers or [])}: choose layers in 0..{n_layers - 1}.")
    if not 1 <= top_k <= model.d_vocab:
        raise ConfigError(f"top_k={top_k}: choose 1..{model.d_vocab}.")
    word_ids = {}
    for word in words:
        token = first_token_id(model.tokenizer, word)
        if token is None:
            raise ConfigError(f"{word!r} has no token of its own in this model's vocabulary.")
        word_ids[word] = token
    positions = grid_positions(cache.inputs, row)
    grid = cache.inputs.patch_grid(row)
    assert grid is not None  # grid_positions refused a sequence without one
    norm, unembed = model.adapter.final_norm(), model.adapter.unembed()
    names = resid_hook_names(list(range(model.n_blocks)))  # layer l -> its residual hook
    ids, probs, found = [], [], {word: [] for word in word_ids}
    for layer in chosen:
        name = names[layer]
        if name not in cache.cache_dict:
            raise ConfigError(f"The cache has no {name}; run run_with_cache without dropping it.")
        resid = cache[name]
        resid = resid[row] if cache.has_batch_dim else resid
        with torch.no_grad():
            logprobs = log_probs(lens_logits(resid[positions.to(resid.device)], norm, unembed))
        top = logprobs.topk(top_k, dim=-1)
        ids.append(top.indices.cpu().numpy())
        probs.append(top.values.exp().cpu().numpy())
        for word, token in word_ids.items():
            found[word].append(logprobs[:, token].exp().cpu().numpy())
    top_ids = np.stack(ids).astype(np.int64)
    return ImageTokenLens(
        layers=np.asarray(chosen, dtype=np.int64),
        grid=(int(grid[0]), int(grid[1])),
        positions=positions.cpu().numpy().astype(np.int64),
        top_ids=top_ids,
        top_tokens=token_text_array(model.tokenizer, top_ids),
        top_probs=np.stack(probs).astype(np.float32),
        word_probs={word: np.stack(values).astype(np.float32) for word, values in found.items()},
    )


def plot_word_on_image(
    lens: ImageTokenLens,
    word: str,
    layers: Sequence[int] | None = None,
    columns: int = 6,
    vmax: float | None = None,
) -> Figure:
    """A strip of patch-grid heatmaps, one per layer (default: up to `columns` spread evenly):
    the probability of `word` at each image patch, on one colour scale (up to the strip's
    highest value, or `vmax`: give two strips one `vmax` to compare them by colour)."""
    if word not in lens.word_probs:
        raise ConfigError(f"{word!r} was not among the words asked for: {list(lens.word_probs)}.")
    if layers is None:
        picks = np.linspace(0, len(lens.layers) - 1, num=min(columns, len(lens.layers)))
        layers = sorted({int(lens.layers[round(p)]) for p in picks})
    index = {int(layer): i for i, layer in enumerate(lens.layers)}
    missing = [layer for layer in layers if layer not in index]
    if missing:
        raise ConfigError(f"layers {missing} were not computed; computed: {list(index)}.")
    probs = lens.word_probs[word]
    top = max(float(probs[[index[layer] for layer in layers]].max()), 1e-9)
    if vmax is not None:
        if not vmax > 0:
            raise ConfigError(f"vmax={vmax}: give a probability above 0 (1 for the full scale).")
        top = vmax
    figure = Figure(figsize=(2.1 * len(layers) + 0.6, 2.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(layers)))
    image = None
    for axis, layer in zip(axes, layers, strict=True):
        image = axis.imshow(probs[index[layer]].reshape(lens.grid), cmap="magma", vmin=0, vmax=top)
        axis.set_title(f"layer {layer}", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.colorbar(image, ax=list(axes), shrink=0.8, label=f"P({word!r})")
    figure.suptitle(f"{word!r} in the image tokens, by layer (0 = embeddings)", fontsize=10)
    return figure
