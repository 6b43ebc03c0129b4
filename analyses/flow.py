"""Where image information flows: attention-knockout sweeps over windows of layers.

For each window of `window` consecutive blocks and each edge (source -> target, e.g. image ->
last), block the target's attention to the source in that window only (`mmlens.knockout`) and
measure the answer's probability at the last position: the curves of Geva et al. (2023), Kaduri
et al. (2024) and Zhang et al. (2024). A window starting at block s leaves blocks 0..s-1 as they
were, so the shared sweep runs only blocks s.. from the unedited run's residual stream there, and
runs every edge of a window as one batch, encoding the image once for the whole sweep;
`shared=False` runs one whole forward per window and edge (the naive loop, kept as the
reference the shared sweep is tested and timed against).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from matplotlib.figure import Figure
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.fast_path import needs_bridge
from mmlens.inputs import ImageLike
from mmlens.knockout import attention_knockout, parse_edge
from mmlens.model import HookedLVLM
from mmlens.progress import progress_bar
from mmlens.skipping import skipped_blocks
from mmlens.words import first_token_id

#: The three flows the papers compare: image to the last position, image to the question's
#: tokens, the question's tokens to the last position.
EDGES = ("image->last", "image->prompt", "prompt->last")
Metric = Callable[[Float[Tensor, "pos d_vocab"]], float]


def knockout_sweep(
    model: HookedLVLM,
    image: ImageLike,
    prompt: str,
    answer: str | None = None,
    *,
    window: int | None = None,
    edges: Sequence[str | tuple[Any, Any]] = EDGES,
    metric: Metric | None = None,
    answer_start: str = "",
    shared: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (edge, window): edge, start and end (first and last block of the window),
    value (the metric with that knockout), base (without), change (value - base) and
    relative_change ((value - base) / |base|, in %). The default metric is the probability of
    `answer`'s first token at the last position (`answer` None: the model's own top token);
    `window` defaults to a quarter of the blocks (LLaVA-1.5-7B: 8 of 32). `answer_start`: text
    the model has already said (`HookedLVLM.prepare`), to sweep the position that predicts a
    word inside a caption; "last" is then that position and "prompt" includes that text."""
    n_blocks = model.n_blocks
    window = max(1, n_blocks // 4) if window is None else window
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= n_blocks:
        raise ConfigError(f"window={window!r}; choose 1..{n_blocks} blocks.")
    names = [_edge_name(edge) for edge in edges]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"edges={list(edges)}: give distinct edges, e.g. {list(EDGES)}.")
    inputs = model.prepare(image, prompt, answer_start=answer_start)
    with torch.no_grad():
        base_logits, cache = model.run_with_cache(
            inputs=inputs, names_filter=lambda name: name.endswith("hook_resid_pre")
        )
    metric, label = _metric(model, metric, answer, base_logits[0])
    base = metric(base_logits[0])
    starts = range(n_blocks - window + 1)
    repeated = ([image] * len(names), [prompt] * len(names))
    batch = model.prepare(*repeated, answer_start=answer_start) if shared else None
    rows = []
    bar = progress_bar(
        total=len(starts), desc="knockout windows", unit="window", disable=not progress
    )
    with _image_features_once(model) if shared else nullcontext():
        for start in starts:
            layers = list(range(start, start + window))
            if shared:
                resid = cache[f"blocks.{start}.hook_resid_pre"]
                values = _shared_window(model, batch, edges, layers, resid, metric)
            else:
                values = [_naive(model, inputs, edge, layers, metric) for edge in edges]
            for name, value in zip(names, values, strict=True):
                rows.append({"edge": name, "start": start, "end": layers[-1], "value": value})
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows)
    frame["base"] = base
    frame["change"] = frame.value - base
    frame["relative_change"] = 100 * frame.change / max(abs(base), 1e-12)
    frame.attrs.update(
        metric=label, window=window, n_blocks=n_blocks, prompt=prompt, answer_start=answer_start
    )
    return frame


def _edge_name(edge: Any) -> str:
    source, target = parse_edge(edge)
    if not isinstance(source, str) or not isinstance(target, str):
        raise ConfigError(f"edge {edge!r}: a sweep names its groups, e.g. 'image->last'.")
    return f"{source}->{target}"


def _metric(
    model: HookedLVLM, metric: Metric | None, answer: str | None, logits: Tensor
) -> tuple[Metric, str]:
    """The metric and its label: given, or P(answer's first token) at the last position."""
    if metric is not None:
        if answer is not None:
            raise ConfigError("Give answer= or metric=, not both.")
        return metric, getattr(metric, "__name__", "metric")
    if answer is None:
        token = int(logits[-1].argmax())
    else:
        found = first_token_id(model.tokenizer, answer)
        if found is None:
            raise ConfigError(f"{answer!r} has no token of its own in this model's vocabulary.")
        token = found
    text = model.tokenizer.decode([token])

    def probability(out: Tensor) -> float:
        return float(torch.softmax(out[-1].double(), -1)[token])

    return probability, f"P({text.strip() or text!r})"


def _naive(model: HookedLVLM, inputs: Any, edge: Any, layers: list[int], metric: Metric) -> float:
    """One whole forward with `edge` knocked out in `layers`."""
    with torch.no_grad(), attention_knockout(model, inputs, [edge], layers):
        return metric(model(inputs=inputs)[0])


def _shared_window(
    model: HookedLVLM,
    batch: Any,
    edges: Sequence[str | tuple[Any, Any]],
    layers: list[int],
    resid: Float[Tensor, "1 pos d_model"],
    metric: Metric,
) -> list[float]:
    """Every edge in one batch (row i knocks out edge i), running only blocks layers[0]..: the
    first of them reads the unedited residual stream `resid` instead of what came before."""
    with torch.no_grad(), ExitStack() as stack:
        for row, edge in enumerate(edges):
            stack.enter_context(attention_knockout(model, batch, [edge], layers, rows=[row]))
        stack.enter_context(_start_at(model, layers[0], resid))
        logits = model(inputs=batch)
    return [metric(logits[row]) for row in range(len(edges))]


@contextmanager
def _start_at(model: HookedLVLM, block: int, resid: Tensor) -> Iterator[None]:
    """Run blocks `block`.. only, the first reading `resid` (expanded over the batch)."""
    first = model.adapter.decoder_layers()[block]

    @needs_bridge
    def replace(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        assert hidden is not None and hidden.shape[1:] == resid.shape[1:]
        fed = resid.to(hidden.device, hidden.dtype).expand_as(hidden)
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": fed}
        return (fed, *args[1:]), kwargs

    handle = first.register_forward_pre_hook(replace, with_kwargs=True)
    try:
        with skipped_blocks(model.adapter, range(block)):
            yield
    finally:
        handle.remove()


@contextmanager
def _image_features_once(model: HookedLVLM) -> Iterator[None]:
    """Encode the image once for the whole sweep: every window's batch holds the same pixels,
    so the vision tower's and projector's output of the first forward serves the others."""
    inner = getattr(model.adapter.hf_model, "model", None)
    original = getattr(inner, "get_image_features", None)
    if original is None:
        yield
        return
    kept: list[Any] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        if not kept:
            kept.append(original(*args, **kwargs))
        return kept[0]

    inner.get_image_features = once  # an instance attribute, over the method
    try:
        yield
    finally:
        del inner.get_image_features


def plot_knockout_sweep(table: pd.DataFrame) -> Figure:
    """The relative change of the metric per window start, one line per edge."""
    if table.empty or not {"edge", "start", "relative_change"} <= set(table.columns):
        raise ConfigError("This table is not a knockout sweep (from knockout_sweep).")
    figure = Figure(figsize=(5.2, 3.0), layout="constrained")
    axis = figure.subplots()
    for edge, part in table.groupby("edge", sort=False):
        axis.plot(part.start, part.relative_change, marker="o", markersize=3, label=edge)
    axis.axhline(0, color="0.6", linewidth=0.8)
    window = table.attrs.get("window", "?")
    axis.set_xlabel(f"first block of the knocked-out window ({window} blocks)")
    axis.set_ylabel(f"change in {table.attrs.get('metric', 'metric')} (%)")
    axis.legend(fontsize=8, frameon=False)
    axis.set_xticks(np.unique(table.start))
    return figure
