"""`Trace`: the layer-by-layer record of one generation, the one format analyses read.

A Trace holds numpy arrays and plain metadata only (no model), so it can be saved, loaded and
built by hand with planted answers. Layer numbers follow Hugging Face `hidden_states`:
0 = embedding output, l = output of block l-1.
"""

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float, Int, Shaped

from mmlens.errors import ConfigError, TraceFormatError
from mmlens.trace_files import ARRAY_NAMES, FORMAT_VERSION, read_trace_files

_ARRAYS = ARRAY_NAMES


@dataclass(frozen=True)
class Trace:
    """Per-step, per-layer lens statistics at the predicting position of a greedy generation.

    `jsd[s, i]` is the Jensen-Shannon divergence (nats) between recorded layers `layers[i]` and
    `layers[i + 1]`; the last column is NaN. `logprob[s, i]` is the log-probability that layer
    `layers[i]` gives the token generated at step `s`, and `rank[s, i]` its rank there (0 = top-1).
    `top1_logprobs[s, j, i]` is the log-probability layer `layers[i]` gives to the top-1 token of
    layer `layers[j]` (`topk_ids[s, j, 0]`): the paper's candidate tokens, followed at every layer.
    `paper_jsd` is what the paper's code computes in place of `jsd` (`lens.paper_divergence`);
    None in traces that do not record it. `features` are the residual vectors, except that
    traces made with the paper lens final-norm the last layer, as HF `hidden_states[-1]` is.
    `image_attention[s, i, h]` (when recorded) is the share of head h's attention at the
    predicting position that goes to image tokens in the block producing layer `layers[i]` (NaN
    for layer 0); `region_attention` the same per patch-grid region ("r,c" in raster order over
    `settings["attention_regions"]` per side). See `mmlens.visual_attention`.
    `final_jsd[s, i]` is the JSD between layer `layers[i]` and the last, `candidate_prob[s, i]`
    that layer's highest probability among the last layer's candidates (`lens.final_jsd`,
    `lens.candidate_probs`); None in traces made before they were recorded.
    """

    prompt: str
    prompt_text: str
    prompt_ids: list[int]
    text: str
    tokens: list[str]
    token_ids: Int[np.ndarray, " step"]
    layers: Int[np.ndarray, " layer"]
    logprob: Float[np.ndarray, "step layer"]
    entropy: Float[np.ndarray, "step layer"]
    jsd: Float[np.ndarray, "step layer"]
    topk_ids: Int[np.ndarray, "step layer k"]
    topk_probs: Float[np.ndarray, "step layer k"]
    topk_tokens: Shaped[np.ndarray, "step layer k"]
    rival_words: list[str]
    rival_ids: list[int]
    rival_logprobs: Float[np.ndarray, "step layer rival"]
    rank: Int[np.ndarray, "step layer"]
    top1_logprobs: Float[np.ndarray, "step layer layer"]
    image_span: tuple[int, int] | None = None
    features: Float[np.ndarray, "step layer d_model"] | None = None
    paper_jsd: Float[np.ndarray, "step layer"] | None = None
    image_attention: Float[np.ndarray, "step layer head"] | None = None
    region_attention: Float[np.ndarray, "step layer head region"] | None = None
    final_jsd: Float[np.ndarray, "step layer"] | None = None
    candidate_prob: Float[np.ndarray, "step layer"] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_steps, n_layers = len(self.token_ids), len(self.layers)
        if len(self.tokens) != n_steps:
            raise TraceFormatError(f"{len(self.tokens)} token strings for {n_steps} steps.")
        for name in ("logprob", "entropy", "jsd", "rank"):
            if getattr(self, name).shape != (n_steps, n_layers):
                shape = getattr(self, name).shape
                raise TraceFormatError(
                    f"{name} has shape {shape}; expected ({n_steps}, {n_layers})."
                )
        if len(self.rival_words) != len(self.rival_ids):
            raise TraceFormatError("rival_words and rival_ids differ in length.")
        if self.rival_logprobs.shape != (n_steps, n_layers, len(self.rival_ids)):
            raise TraceFormatError(f"rival_logprobs has shape {self.rival_logprobs.shape}.")
        if self.top1_logprobs.shape != (n_steps, n_layers, n_layers):
            raise TraceFormatError(f"top1_logprobs has shape {self.top1_logprobs.shape}.")
        for name in ("paper_jsd", "final_jsd", "candidate_prob"):
            value = getattr(self, name)
            if value is not None and value.shape != (n_steps, n_layers):
                raise TraceFormatError(f"{name} has shape {value.shape}.")
        if self.features is not None and self.features.shape[:2] != (n_steps, n_layers):
            raise TraceFormatError(f"features have shape {self.features.shape}.")
        for name in ("image_attention", "region_attention"):
            value = getattr(self, name)
            if value is not None and value.shape[:2] != (n_steps, n_layers):
                raise TraceFormatError(f"{name} has shape {value.shape}.")
        if (
            self.image_attention is not None
            and self.region_attention is not None
            and self.region_attention.shape[2] != self.image_attention.shape[2]
        ):
            raise TraceFormatError("image_attention and region_attention differ in heads.")

    @property
    def n_steps(self) -> int:
        return len(self.token_ids)

    def layer_index(self, layer: int) -> int:
        """Column of HF layer number `layer` in the arrays (they differ when blocks are skipped)."""
        matches = np.flatnonzero(self.layers == layer)
        if matches.size == 0:
            raise IndexError(f"Layer {layer} was not recorded; recorded: {self.layers.tolist()}")
        return int(matches[0])

    def to_frame(self) -> pd.DataFrame:
        """Tidy table, one row per (step, layer).

        Columns: step, token_id, token, layer, logprob, prob, rank, entropy, jsd (NaN on the last
        layer), paper_jsd (when recorded), top1_id, top1_token, top1_prob, one `rival_<word>`
        log-prob column per rival, final_jsd and candidate_prob (when recorded), and
        image_attention (when recorded: the mean over heads).
        """
        n_steps, n_layers = self.logprob.shape
        frame = pd.DataFrame(
            {
                "step": np.repeat(np.arange(n_steps), n_layers),
                "token_id": np.repeat(self.token_ids, n_layers),
                "token": np.repeat(np.asarray(self.tokens, dtype=object), n_layers),
                "layer": np.tile(self.layers, n_steps),
                "logprob": self.logprob.ravel(),
                "prob": np.exp(self.logprob.ravel()),
                "rank": self.rank.ravel(),
                "entropy": self.entropy.ravel(),
                "jsd": self.jsd.ravel(),
                "top1_id": self.topk_ids[..., 0].ravel(),
                "top1_token": self.topk_tokens[..., 0].ravel().astype(object),
                "top1_prob": self.topk_probs[..., 0].ravel(),
            }
        )
        if self.paper_jsd is not None:
            frame.insert(frame.columns.get_loc("jsd") + 1, "paper_jsd", self.paper_jsd.ravel())
        for index, word in enumerate(self.rival_words):
            frame[f"rival_{word}"] = self.rival_logprobs[..., index].ravel()
        for name in ("final_jsd", "candidate_prob"):
            if getattr(self, name) is not None:
                frame[name] = getattr(self, name).ravel()
        if self.image_attention is not None:
            frame["image_attention"] = self.image_attention.mean(axis=-1).ravel()
        return frame

    def save(self, path: str | Path) -> Path:
        """Write the trace to directory `path` as `arrays.npz` + `trace.json` (no pickle)."""
        directory = Path(path)
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"{directory} is a file; give a folder to save the trace in.")
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        np.savez_compressed(directory / "arrays.npz", **arrays)
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ARRAYS}
        meta["format_version"] = FORMAT_VERSION
        (directory / "trace.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        return directory

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        """Read a trace written by `save`; a damaged one is a `TraceFormatError` naming the file."""
        directory = Path(path)
        parts = read_trace_files(directory)
        try:
            return cls(**parts)
        except TraceFormatError as error:
            raise TraceFormatError(
                f"{directory}: {error} The saved trace is inconsistent; save it again."
            ) from error
