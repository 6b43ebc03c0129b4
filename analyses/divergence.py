"""Distribution level (paper Fig. 4): Jensen-Shannon divergence between adjacent layers.

The default is the true JSD of the lens distributions (natural log, so at most ln 2; or bits).
`mode="paper"` reproduces the authors' numbers: what their code computes in place of the JSD,
(KL(M||P) + KL(M||Q)) / 2 averaged over the vocabulary (`mmlens.lens.paper_divergence`: their
`kl_div(log_softmax(layer), M)` is KL(M||layer), the reverse of the JSD's terms), recorded by
`trace` as `paper_jsd`, with each layer-pair column scaled by its maximum absolute value
(MaxAbsScaler) as in their heatmap.
"""

import math

import numpy as np
import pandas as pd
from jaxtyping import Float
from matplotlib.figure import Figure
from sklearn.preprocessing import MaxAbsScaler
from torch import Tensor

from mmlens.errors import TraceFormatError
from mmlens.lens import jensen_shannon
from mmlens.token_text import shown
from mmlens.trace import Trace

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2)}
MODES = ("true", "paper")


def layer_pair_labels(trace: Trace) -> list[str]:
    """Column names 'a-b' for the JSD between recorded layers a and b."""
    return [f"{a}-{b}" for a, b in zip(trace.layers[:-1], trace.layers[1:], strict=True)]


def jsd_matrix(
    trace: Trace, *, unit: str = "nats", mode: str = "true", n_tokens: int | None = None
) -> pd.DataFrame:
    """Tokens (rows, 'step:token') x adjacent layer pairs (columns) of JS divergence.

    `mode="paper"`: the paper code's divergence (`trace.paper_jsd`), then MaxAbsScaler per
    column (unitless).
    """
    if unit not in UNITS:
        raise ValueError(f"unit={unit!r}; choose one of {tuple(UNITS)}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {MODES}")
    rows = slice(0, n_tokens or trace.n_steps)
    if mode == "paper":
        if trace.paper_jsd is None:
            raise TraceFormatError(
                "This trace has no paper_jsd (it predates it or was built by hand); "
                "trace again for mode='paper'."
            )
        values = MaxAbsScaler().fit_transform(trace.paper_jsd[rows, :-1].astype(np.float64))
    else:
        values = trace.jsd[rows, :-1].astype(np.float64) * UNITS[unit]
    index = [f"{step}:{shown(token)}" for step, token in enumerate(trace.tokens[: len(values)])]
    return pd.DataFrame(values, index=index, columns=layer_pair_labels(trace))


def mean_jsd_profile(trace: Trace, unit: str = "nats") -> pd.Series:
    """Average JSD of each adjacent layer pair over all generated tokens."""
    return jsd_matrix(trace, unit=unit).mean(axis=0)


def plot_jsd_heatmap(
    trace: Trace, *, unit: str = "nats", mode: str = "true", n_tokens: int = 40
) -> Figure:
    """Heatmap of `jsd_matrix` (paper Fig. 4 shows the first 40 tokens in paper mode)."""
    matrix = jsd_matrix(trace, unit=unit, mode=mode, n_tokens=n_tokens)
    figure = Figure(
        figsize=(max(6, 0.28 * matrix.shape[1] + 2), max(3, 0.22 * len(matrix) + 1.5)),
        layout="constrained",
    )
    axis = figure.subplots()
    image = axis.imshow(matrix.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    axis.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=6)
    axis.set_yticks(range(len(matrix)), matrix.index, fontsize=6)
    axis.set_xlabel("adjacent layers (0 = embeddings)")
    label = "paper's divergence, column-scaled" if mode == "paper" else f"JSD ({unit})"
    figure.colorbar(image, ax=axis, label=label)
    return figure


def jsd_between(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"], unit: str = "nats"
) -> Float[Tensor, "*batch"]:
    """True JSD of two batches of log-distributions in `unit` (nats or bits)."""
    return jensen_shannon(logp, logq) * UNITS[unit]
