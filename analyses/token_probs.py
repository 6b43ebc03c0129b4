"""Token level (paper Fig. 2 and 3): each token's probability at every layer, and its rivals.

Layers are HF `hidden_states` numbers (0 = embeddings, l = output of block l-1).
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.html import Component, circuitsvis_page
from mmlens.trace import Trace

#: The paper follows the top-1 tokens of layers 20..32 of a 32-block model.
PAPER_LATE_FRACTION = 20 / 32


def token_probabilities(trace: Trace) -> pd.DataFrame:
    """Probability, log-probability and rank of each generated token at every layer."""
    frame = trace.to_frame()
    return frame[["step", "token_id", "token", "layer", "prob", "logprob", "rank"]].copy()


def default_late_layer(trace: Trace) -> int:
    """First 'late' layer of the paper's rule: layer 20 for a 32-block model, scaled otherwise."""
    n_blocks = int(trace.settings.get("n_blocks", trace.layers.max()))
    return round(PAPER_LATE_FRACTION * n_blocks)


def late_layer_candidates(trace: Trace, from_layer: int | None = None) -> pd.DataFrame:
    """The paper's candidates at each step and their probability at every layer.

    Candidates are the top-1 tokens of every recorded layer >= `from_layer` plus the generated
    token (which, in greedy decoding, is the last layer's top-1). Columns: step, token (the one
    generated), candidate_id, candidate, is_generated, layer, prob.
    """
    start = default_late_layer(trace) if from_layer is None else from_layer
    late = np.flatnonzero(trace.layers >= start)
    if late.size == 0:
        raise ValueError(f"No recorded layer >= {start}; recorded: {trace.layers.tolist()}")
    rows = []
    for step in range(trace.n_steps):
        seen: set[int] = set()
        for source in late:
            candidate = int(trace.topk_ids[step, source, 0])
            if candidate in seen:
                continue
            seen.add(candidate)
            for column, layer in enumerate(trace.layers):
                rows.append(
                    (
                        step,
                        trace.tokens[step],
                        candidate,
                        str(trace.topk_tokens[step, source, 0]),
                        candidate == int(trace.token_ids[step]),
                        int(layer),
                        float(np.exp(trace.top1_logprobs[step, source, column])),
                    )
                )
    columns = ["step", "token", "candidate_id", "candidate", "is_generated", "layer", "prob"]
    return pd.DataFrame(rows, columns=columns)


def rival_probabilities(trace: Trace) -> pd.DataFrame:
    """Probability of each rival word (e.g. a hallucinated and the correct word) at every layer."""
    if not trace.rival_words:
        raise ValueError("The trace has no rivals; trace again with rivals=['word', ...].")
    n_steps, n_layers, n_rivals = trace.rival_logprobs.shape
    return pd.DataFrame(
        {
            "step": np.repeat(np.arange(n_steps), n_layers * n_rivals),
            "token": np.repeat(np.asarray(trace.tokens, dtype=object), n_layers * n_rivals),
            "layer": np.tile(np.repeat(trace.layers, n_rivals), n_steps),
            "rival": np.tile(np.asarray(trace.rival_words, dtype=object), n_steps * n_layers),
            "prob": np.exp(trace.rival_logprobs.astype(np.float64)).ravel(),
        }
    )


def plot_token_probabilities(
    trace: Trace,
    steps: range | list[int] | None = None,
    candidates: str = "generated",
    from_layer: int | None = None,
) -> Figure:
    """Small multiples, one panel per step, of probability over layers (like paper Fig. 2).

    `candidates="generated"` draws the generated token (filled area); `"paper"` adds every
    late-layer top-1 candidate of the paper's rule as lines.
    """
    chosen = list(steps if steps is not None else range(min(trace.n_steps, 20)))
    columns = min(5, len(chosen))
    rows = -(-len(chosen) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    probs = np.exp(trace.logprob.astype(np.float64))
    table = late_layer_candidates(trace, from_layer) if candidates == "paper" else None
    for panel, step in zip(axes.flat, chosen, strict=False):
        panel.fill_between(trace.layers, probs[step], alpha=0.4, label=repr(trace.tokens[step]))
        panel.plot(trace.layers, probs[step], lw=1.5)
        if table is not None:
            for candidate, group in table[(table.step == step) & ~table.is_generated].groupby(
                "candidate"
            ):
                panel.plot(group.layer, group.prob, lw=1, ls="--", label=repr(candidate))
        panel.set_title(f"step {step}: {trace.tokens[step]!r}", fontsize=9)
        panel.set_ylim(0, 1)
        panel.legend(fontsize=6, loc="upper left")
    for panel in axes.flat[len(chosen) :]:
        panel.set_visible(False)
    figure.supxlabel("layer (0 = embeddings)")
    figure.supylabel("probability")
    return figure


def plot_rivals(trace: Trace, step: int | None = None) -> Figure:
    """Rival words' probabilities over layers at one step (like paper Fig. 3).

    Without `step`, the first step that generated one of the rivals is shown (else step 0).
    """
    if step is None:
        generated = [i for i, t in enumerate(trace.token_ids) if int(t) in trace.rival_ids]
        step = generated[0] if generated else 0
    table = rival_probabilities(trace)
    figure = Figure(figsize=(5, 3.2), layout="constrained")
    axis = figure.subplots()
    for rival, group in table[table.step == step].groupby("rival", sort=False):
        axis.plot(group.layer, group.prob, marker="o", ms=3, label=str(rival))
    axis.set_title(f"step {step} (generated {trace.tokens[step]!r})")
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_ylabel("probability")
    axis.legend()
    return figure


def spread_layers(trace: Trace, count: int) -> list[int]:
    """Up to `count` recorded layers spread evenly from the first to the last."""
    picks = np.linspace(0, len(trace.layers) - 1, num=min(count, len(trace.layers)))
    return sorted({int(trace.layers[round(index)]) for index in picks})


def topk_view(trace: Trace, layers: list[int] | None = None) -> str:
    """Interactive, offline HTML page (circuitsvis) of `topk_components`."""
    return circuitsvis_page(topk_components(trace, layers), title=f"mmlens: {trace.text[:80]}")


def topk_components(trace: Trace, layers: list[int] | None = None) -> list[Component]:
    """circuitsvis views: the generated text, each token coloured by its probability at a chosen
    layer; and, per layer in `layers` (default: a few spread out), the text with each token's
    top-k predictions at that layer on hover.
    """
    chosen = layers if layers is not None else spread_layers(trace, 5)
    probs = np.exp(trace.logprob.astype(np.float64))
    components: list[Component] = [
        (
            "Probability of each generated token, per layer (pick a layer)",
            "ColoredTokensMulti",
            {
                "tokens": list(trace.tokens),
                "values": probs,
                "labels": [f"layer {int(layer)}" for layer in trace.layers],
            },
        ),
    ]
    for layer in chosen:
        column = trace.layer_index(layer)
        with np.errstate(divide="ignore"):  # float32 probabilities that underflowed: -Infinity
            top_logprobs = np.log(trace.topk_probs[:, column].astype(np.float64))
        components.append(
            (
                f"Top-{trace.topk_ids.shape[-1]} predictions at layer {layer} (hover a token)",
                "TokenLogProbs",
                {
                    "prompt": ["ASSISTANT:", *trace.tokens],
                    "topKLogProbs": top_logprobs,
                    "topKTokens": trace.topk_tokens[:, column].tolist(),
                    "correctTokenRank": trace.rank[:, column],
                    "correctTokenLogProb": trace.logprob[:, column].astype(np.float64),
                },
            )
        )
    return components
