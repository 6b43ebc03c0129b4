"""LVLM vs LLM (paper section 6): the same analyses with and without the image.

The paper reports that stages (a JSD collapse at a critical layer, late mutations) appear with
image input but not for the backbone on text alone. These functions put the two side by side.
"""

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.analyses.stages import DEFAULT_PARAMS, StageParams, token_stages
from mmlens.trace import Trace


def image_and_text_traces(
    model: Any, image: Any, prompt: str, text_prompt: str | None = None, **trace_kwargs: Any
) -> tuple[Trace, Trace]:
    """Trace `prompt` with the image, and `text_prompt` (default: the same) without it."""
    with_image = model.trace(image, prompt, **trace_kwargs)
    text_only = model.trace(None, text_prompt or prompt, **trace_kwargs)
    return with_image, text_only


def jsd_profiles(with_image: Trace, text_only: Trace) -> pd.DataFrame:
    """Mean and spread of adjacent-layer JSD per layer pair, for both traces (tidy)."""
    frames = []
    for label, trace in (("image", with_image), ("text only", text_only)):
        values = trace.jsd[:, :-1].astype(np.float64)
        frames.append(
            pd.DataFrame(
                {
                    "input": label,
                    "layer": trace.layers[:-1],
                    "mean_jsd": values.mean(axis=0),
                    "std_jsd": values.std(axis=0),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def stage_comparison(
    with_image: Trace, text_only: Trace, params: StageParams = DEFAULT_PARAMS
) -> pd.DataFrame:
    """Stage statistics side by side: tokens, tokens with a critical layer, its median and
    spread, and the fraction of tokens with a mutation."""
    rows = {}
    for label, trace in (("image", with_image), ("text only", text_only)):
        table = token_stages(trace, params)
        critical = table.critical_layer.dropna().to_numpy(dtype=float)
        rows[label] = {
            "tokens": len(table),
            "with critical layer": float(len(critical) / max(len(table), 1)),
            "median critical layer": float(np.median(critical)) if len(critical) else np.nan,
            "critical layer IQR": float(np.subtract(*np.percentile(critical, [75, 25])))
            if len(critical)
            else np.nan,
            "with mutation": float(table.has_mutation.mean()) if len(table) else np.nan,
        }
    return pd.DataFrame(rows)


def plot_comparison(with_image: Trace, text_only: Trace) -> Figure:
    """Mean JSD profile (with a one-sd band) with and without the image."""
    profiles = jsd_profiles(with_image, text_only)
    figure = Figure(figsize=(6, 3.4), layout="constrained")
    axis = figure.subplots()
    for label, profile in profiles.groupby("input", sort=False):
        axis.plot(profile.layer, profile.mean_jsd, marker="o", ms=3, label=str(label))
        axis.fill_between(
            profile.layer,
            profile.mean_jsd - profile.std_jsd,
            profile.mean_jsd + profile.std_jsd,
            alpha=0.15,
        )
    axis.set_xlabel("layer l (JSD of l and the next layer)")
    axis.set_ylabel("JSD (nats)")
    axis.legend()
    return figure
