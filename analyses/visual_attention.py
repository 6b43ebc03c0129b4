"""Visual attention: how much the predicting position attends to the image, layer by layer.

`trace_visual_attention` is one trace's tidy table (step, token, layer, head, share) from
`trace(..., visual_attention=True)`. Over a run made with `mmlens run --visual-attention`,
`word_visual_attention` attaches each judged object word's per-layer share (mean over heads) and
`visual_attention_curves` compares hallucinated and correct words per layer, as Jiang et al.
(2024, "Devils in middle layers of large vision-language models") plot their visual attention
ratio, with bootstrap intervals that resample items (words of one caption are not independent).
"""

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.analyses.intervals import clustered_rates
from mmlens.analyses.link import object_mentions
from mmlens.errors import ConfigError, TraceFormatError
from mmlens.trace import Trace


def trace_visual_attention(trace: Trace) -> pd.DataFrame:
    """One row per (step, layer, head): step, token, layer, head, share (of the predicting
    position's attention on image tokens, in the block producing `layer`; layer 0 left out)."""
    if trace.image_attention is None:
        raise TraceFormatError(
            "This trace has no visual attention; trace with visual_attention=True."
        )
    shares = trace.image_attention[:, 1:]  # layer 0 (embeddings) has no attention
    n_steps, n_layers, n_heads = shares.shape
    return pd.DataFrame(
        {
            "step": np.repeat(np.arange(n_steps), n_layers * n_heads),
            "token": np.repeat(np.asarray(trace.tokens, dtype=object), n_layers * n_heads),
            "layer": np.tile(np.repeat(trace.layers[1:], n_heads), n_steps),
            "head": np.tile(np.arange(n_heads), n_steps * n_layers),
            "share": shares.ravel(),
        }
    )


def plot_trace_visual_attention(trace: Trace) -> Figure:
    """Layers x generated tokens heatmap of the share of attention on the image (mean over
    heads), laid out like the JSD heatmap: tokens along x, layer 1 at the bottom."""
    table = trace_visual_attention(trace)
    grid = table.pivot_table(index="layer", columns="step", values="share", aggfunc="mean")
    n_layers, n_steps = grid.shape
    width = min(max(5.0, 0.22 * n_steps + 2.0), 18.0)
    figure = Figure(figsize=(width, max(2.6, 0.16 * n_layers + 1.4)), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", vmin=0, origin="lower")
    labels = [repr(token) for token in trace.tokens[:n_steps]]
    every = max(1, n_steps // 60)
    axis.set_xticks(range(0, n_steps, every), labels[::every], rotation=90, fontsize=7)
    ticks = range(0, n_layers, max(1, n_layers // 12))
    axis.set_yticks(list(ticks), [str(grid.index[i]) for i in ticks], fontsize=7)
    axis.set_ylabel("layer")
    axis.set_title("share of attention on image tokens (mean over heads)", fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8, pad=0.01)
    return figure


def word_visual_attention(
    items: pd.DataFrame, tokens: pd.DataFrame, judge: Any, mentions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (judged object word, layer): order, id, step, word, object, hallucinated,
    layer, image_attention (the word's first token; mean over heads). `mentions` are
    `object_mentions(items, tokens, judge)` when already computed."""
    if "image_attention" not in tokens.columns:
        raise TraceFormatError(
            "The run's tokens table has no image_attention column; run it with "
            "`mmlens run ... --visual-attention` (or RunSettings(visual_attention=True))."
        )
    if mentions is None:
        mentions = object_mentions(items, tokens, judge)
    shares = tokens.loc[tokens.layer > 0, ["order", "step", "layer", "image_attention"]]
    columns = ["order", "id", "step", "word", "object", "hallucinated"]
    frame = mentions[columns].merge(shares, on=["order", "step"], how="left")
    return frame.sort_values(["order", "step", "layer"], kind="stable").reset_index(drop=True)


def visual_attention_curves(
    words: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per layer and group ("hallucinated", "correct", "difference" = hallucinated - correct):
    mean image_attention over words, with a bootstrap interval that resamples items; n_words,
    n_items. From `word_visual_attention`."""
    if words.empty:
        raise ConfigError("No judged object words to compare (the run generated none).")
    rows = []
    items = np.unique(words.order)
    for layer, part in words.groupby("layer", sort=True):
        sums = np.zeros((len(items), 2))
        counts = np.zeros((len(items), 2))
        index = np.searchsorted(items, part.order.to_numpy())
        group = np.where(part.hallucinated.to_numpy(bool), 0, 1)
        np.add.at(sums, (index, group), part.image_attention.to_numpy(float))
        np.add.at(counts, (index, group), 1)
        means, difference = clustered_rates(
            sums, counts, confidence=confidence, n_resamples=n_resamples, seed=seed
        )
        named = [("hallucinated", means[0], 0), ("correct", means[1], 1)]
        for name, interval, column in named:
            rows.append(_row(int(layer), name, interval, counts[:, column]))
        if difference is not None:
            rows.append(_row(int(layer), "difference", difference, counts.sum(1)))
    frame = pd.DataFrame(rows)
    frame.attrs.update(confidence=confidence, n_items=len(items))
    return frame


def _row(layer: int, group: str, interval: Any, counts: np.ndarray) -> dict[str, Any]:
    return {
        "layer": layer,
        "group": group,
        "mean": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "n_words": int(counts.sum()),
        "n_items": int((counts > 0).sum()),
    }


def plot_visual_attention_curves(curves: pd.DataFrame) -> Figure:
    """Mean share of attention on the image per layer, hallucinated vs correct object words,
    with their intervals."""
    if curves.empty or not {"layer", "group", "mean", "low", "high"} <= set(curves.columns):
        raise ConfigError("This table is not from visual_attention_curves.")
    figure = Figure(figsize=(5.2, 3.0), layout="constrained")
    axis = figure.subplots()
    colours = {"hallucinated": "tab:red", "correct": "tab:blue"}
    for group, colour in colours.items():
        part = curves[curves.group == group]
        if part["mean"].notna().any():
            words = int(part.n_words.iloc[0])
            axis.plot(part.layer, part["mean"], color=colour, label=f"{group} ({words} words)")
            axis.fill_between(part.layer, part.low, part.high, color=colour, alpha=0.2)
    axis.set_xlabel("layer")
    axis.set_ylabel("attention on image tokens")
    level = round(100 * curves.attrs.get("confidence", 0.95))
    axis.set_title(f"visual attention by layer ({level} % intervals over items)", fontsize=9)
    axis.legend(fontsize=8, frameon=False)
    return figure
