"""Feature level (paper Fig. 6 and 7): 2-D maps of per-layer residual features.

Features are [item, layer, d_model]: the tokens of one trace (`trace.features`, recorded with
`keep_features=True`) or the first generated token of many traces (`first_token_features`, for
one-word VQA answers over many images). Methods:

* `"tsne"` (default): PCA to at most 50 dimensions, then seeded t-SNE (deterministic);
* `"pca"`: the first two principal components;
* `"paper"`: the authors' settings: embedding layer dropped, MaxAbsScaler, t-SNE with perplexity 40
  (one image; 35 for many images), learning rate 200, 2000 iterations, random_state 0. Their
  features are HF `hidden_states`, whose last layer is final-normed: traces made with
  `lens="paper"` record them so (others keep the raw residual, and `trace_trajectories` warns).

Every map reports scikit-learn's trustworthiness (how well local neighbourhoods are kept, 1 = all).
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.preprocessing import MaxAbsScaler

from mmlens.trace import Trace

METHODS = ("tsne", "pca", "paper")
PAPER_TSNE = {"learning_rate": 200.0, "max_iter": 2000, "random_state": 0}
PAPER_PERPLEXITY = {"tokens": 40.0, "images": 35.0}


def first_token_features(
    traces: Sequence[Trace], step: int = 0
) -> Float[np.ndarray, "item layer d_model"]:
    """The first generated token's features of each trace (all must have `keep_features`).

    `step` picks another generation step: the paper's Fig. 7 script took step 6, where its
    sentence answers ("The color of the flower is ...") reached the colour word.
    """
    missing = [i for i, trace in enumerate(traces) if trace.features is None]
    if missing:
        raise ValueError(f"Traces {missing} have no features; trace with keep_features=True.")
    short = [i for i, trace in enumerate(traces) if trace.n_steps <= step]
    if short:
        raise ValueError(f"Traces {short} generated {step} tokens or fewer; no step {step}.")
    return np.stack([trace.features[step] for trace in traces])


@dataclass(frozen=True)
class Trajectories:
    """A 2-D map of features: one row per (item, layer) with x, y and the layer's group."""

    frame: pd.DataFrame
    method: str
    trustworthiness: float
    settings: dict = field(default_factory=dict)


def embed_features(
    features: Float[np.ndarray, "item layer d_model"],
    *,
    layers: Sequence[int] | None = None,
    groups: Sequence[str] | None = None,
    method: str = "tsne",
    kind: str = "tokens",
    perplexity: float | None = None,
    seed: int = 0,
    item_labels: Sequence[str] | None = None,
) -> Trajectories:
    """Embed all (item, layer) feature vectors in 2-D with `method`; see the module docstring.

    `layers` are the HF layer numbers of axis 1 (default 0..n-1) and `groups` a label per layer
    (e.g. `stages.layer_groups`). `kind` ("tokens" or "images") picks the paper's perplexity.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {METHODS}")
    n_items, n_layers, _ = features.shape
    layer_numbers = np.asarray(layers if layers is not None else range(n_layers))
    group_names = np.asarray(groups if groups is not None else ["layer"] * n_layers, dtype=object)
    if len(layer_numbers) != n_layers or len(group_names) != n_layers:
        raise ValueError("layers and groups need one entry per layer of `features`")
    keep = np.ones(n_layers, dtype=bool)
    if method == "paper":
        keep &= layer_numbers != 0  # the paper drops the embedding output
    data = features[:, keep].reshape(-1, features.shape[-1]).astype(np.float64)
    n_samples = len(data)
    settings: dict = {"seed": seed}
    if method == "pca":
        coords = PCA(n_components=2, random_state=seed).fit_transform(data)
        reduced = data
    else:
        if method == "paper":
            reduced = MaxAbsScaler().fit_transform(data)
            chosen = perplexity or PAPER_PERPLEXITY[kind]
            tsne = TSNE(n_components=2, perplexity=chosen, **PAPER_TSNE)
        else:
            dims = min(50, n_samples - 1, data.shape[1])
            reduced = PCA(n_components=dims, random_state=seed).fit_transform(data)
            chosen = perplexity or min(30.0, max(2.0, (n_samples - 1) / 3))
            tsne = TSNE(
                n_components=2,
                perplexity=chosen,
                init="pca",
                learning_rate="auto",
                max_iter=1000,
                random_state=seed,
            )
        if chosen >= n_samples:
            raise ValueError(
                f"t-SNE perplexity {chosen} needs more than {chosen:.0f} points; got {n_samples} "
                "(pass a smaller perplexity)."
            )
        settings["perplexity"] = chosen
        coords = tsne.fit_transform(reduced)
    neighbours = max(1, min(5, n_samples // 2 - 1))
    score = float(trustworthiness(reduced, coords, n_neighbors=neighbours))
    labels = item_labels if item_labels is not None else [str(i) for i in range(n_items)]
    kept = int(keep.sum())
    frame = pd.DataFrame(
        {
            "item": np.repeat(np.arange(n_items), kept),
            "label": np.repeat(np.asarray(labels, dtype=object), kept),
            "layer": np.tile(layer_numbers[keep], n_items),
            "group": np.tile(group_names[keep], n_items),
            "x": coords[:, 0],
            "y": coords[:, 1],
        }
    )
    return Trajectories(frame, method, score, settings)


def trace_trajectories(
    trace: Trace, *, groups: Sequence[str] | None = None, **kwargs: Any
) -> Trajectories:
    """`embed_features` of one trace's token features (paper Fig. 6)."""
    if trace.features is None:
        raise ValueError("The trace has no features; trace with keep_features=True.")
    if kwargs.get("method") == "paper" and trace.settings.get("lens") != "paper":
        warnings.warn(
            "method='paper' on a trace made without lens='paper': its last layer is the raw "
            "residual, while the paper's was final-normed (HF hidden_states[-1]).",
            stacklevel=2,
        )
    return embed_features(
        trace.features,
        layers=trace.layers.tolist(),
        groups=groups,
        item_labels=trace.tokens,
        kind="tokens",
        **kwargs,
    )


def plot_trajectories(trajectories: Trajectories, *, connect: bool = True) -> Figure:
    """Scatter of the map coloured by layer group, each item's layers joined in order."""
    frame = trajectories.frame
    figure = Figure(figsize=(6, 5), layout="constrained")
    axis = figure.subplots()
    if connect:
        for _, path in frame.groupby("item"):
            axis.plot(path.x, path.y, color="grey", lw=0.4, alpha=0.5)
    for group, points in frame.groupby("group", sort=False):
        axis.scatter(points.x, points.y, s=10, label=str(group))
    axis.set_title(
        f"{trajectories.method}: trustworthiness {trajectories.trustworthiness:.3f}", fontsize=10
    )
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(fontsize=7)
    return figure
