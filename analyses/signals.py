"""Which per-layer signal tells hallucinated object words from correct ones, over a run.

For every judged object word (`analyses.link.object_mentions`), at its first token:
- `mutation`: whether its JSD profile has a mutation (the paper's signal, `analyses.stages`);
- `svar`: the visual attention ratio summed over the middle blocks, as Jiang et al. (2025,
  "Devils in middle layers of large vision-language models") sum blocks 5-18 of LLaVA's 32
  (layers 6-19 here; the same fractions of depth for other models); needs a run made with
  `--visual-attention`;
- `dola_jsd` and `dola_contrast`: DoLa's (Chuang et al., 2024) premature layer M, the even layer
  in the upper half (L/2 <= M < L) whose distribution is furthest (JSD) from the last layer's;
  the JSD there and log p_L(word) - log p_M(word);
- `deco_conf`: DeCo's (Wang et al., 2025) anchor confidence, the highest probability any layer
  of blocks 20-28 of 32 (layers 21-29; same fractions elsewhere) gives to one of the last layer's
  candidate tokens (`lens.candidate_probs`).
`signal_separation` gives each signal's AUROC for hallucinated vs correct words with a bootstrap
interval that resamples items; 0.5 is chance, above 0.5 means hallucinated words score higher.
"""

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.analyses.intervals import clustered_auroc
from mmlens.analyses.link import object_mentions
from mmlens.errors import TraceFormatError

#: Signal -> (what it is, the tokens-table column it needs).
SIGNALS = {
    "mutation": ("a mutation in the word's JSD profile (this paper)", "jsd"),
    "svar": ("visual attention ratio, middle blocks (Jiang et al. 2025)", "image_attention"),
    "dola_jsd": ("JSD of DoLa's premature layer to the last (Chuang et al. 2024)", "final_jsd"),
    "dola_contrast": ("log p_last - log p_premature (DoLa)", "final_jsd"),
    "deco_conf": ("anchor-layer confidence (DeCo, Wang et al. 2025)", "candidate_prob"),
}
SVAR_BAND = (6 / 32, 19 / 32)  # layers 6..19 of LLaVA's 32 blocks (blocks 5..18)
DECO_BAND = (21 / 32, 29 / 32)  # layers 21..29 (blocks 20..28)


def _band(layers: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Which recorded layers fall in a band given as fractions of the last layer number."""
    last = layers.max()
    low, high = round(band[0] * last), round(band[1] * last)
    return (layers >= low) & (layers <= high)


def word_signals(
    items: pd.DataFrame, tokens: pd.DataFrame, judge: Any, mentions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per judged object word: order, id, step, word, object, hallucinated, and each
    signal of `SIGNALS` (NaN where the run did not record what it needs), plus dola_layer and
    deco_layer (where DoLa's premature layer and DeCo's anchor fell)."""
    if mentions is None:
        mentions = object_mentions(items, tokens, judge)
    keys = ["order", "id", "step", "word", "object", "hallucinated"]
    frame = mentions[keys].copy()
    frame["mutation"] = mentions.has_mutation.astype(float)
    columns = ["order", "step", "layer", "logprob", "final_jsd", "candidate_prob"]
    columns.append("image_attention")  # with --visual-attention
    present = [c for c in columns if c in tokens.columns]
    wanted = tokens[present].merge(mentions[["order", "step"]], on=["order", "step"])
    per_word = {key: part.sort_values("layer") for key, part in wanted.groupby(["order", "step"])}
    values = [_signals(per_word.get((row.order, row.step))) for row in mentions.itertuples()]
    extra = pd.DataFrame(values, index=frame.index, columns=list(_EMPTY))
    return pd.concat([frame, extra], axis=1)


_EMPTY = dict.fromkeys(
    ["svar", "dola_jsd", "dola_contrast", "dola_layer", "deco_conf", "deco_layer"], np.nan
)


def _signals(rows: pd.DataFrame | None) -> dict[str, float]:
    """The layer signals of one word's first token from its tokens-table rows."""
    found = dict(_EMPTY)
    if rows is None or rows.empty:
        return found
    layers = rows.layer.to_numpy()
    if "image_attention" in rows:
        band = _band(layers, SVAR_BAND) & (layers > 0)
        found["svar"] = float(rows.image_attention.to_numpy()[band].sum())
    last = layers.max()
    if "final_jsd" in rows and rows.final_jsd.notna().all():
        premature = (layers % 2 == 0) & (layers >= last / 2) & (layers < last)
        if premature.any():
            jsd = rows.final_jsd.to_numpy()
            column = np.flatnonzero(premature)[np.argmax(jsd[premature])]
            logprob = rows.logprob.to_numpy()
            found.update(
                dola_jsd=float(jsd[column]),
                dola_contrast=float(logprob[-1] - logprob[column]),
                dola_layer=float(layers[column]),
            )
    if "candidate_prob" in rows and rows.candidate_prob.notna().all():
        band = _band(layers, DECO_BAND)
        if band.any():
            probs = rows.candidate_prob.to_numpy()
            column = np.flatnonzero(band)[np.argmax(probs[band])]
            found.update(deco_conf=float(probs[column]), deco_layer=float(layers[column]))
    return found


def signal_separation(
    signals: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per signal: auroc (hallucinated vs correct words; 0.5 chance, above 0.5 higher in
    hallucinated words), low, high, separation (|auroc - 0.5|), n_hallucinated, n_correct,
    n_items, what, and a note where the run lacks what a signal needs."""
    if not {"hallucinated", "order", *SIGNALS} <= set(signals.columns):
        raise TraceFormatError("This table is not from word_signals.")
    rows = []
    for name, (what, column) in SIGNALS.items():
        usable = signals[signals[name].notna()]
        auroc = low = high = np.nan
        if signals.empty:
            note = "no object words in the run"
        elif usable.empty:
            note = f"not recorded in this run (needs tokens.parquet's {column})"
        else:
            interval = clustered_auroc(
                usable[name].to_numpy(float),
                usable.hallucinated.to_numpy(bool),
                usable.order.to_numpy(),
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            auroc, low, high = interval.estimate, interval.low, interval.high
            note = "" if np.isfinite(auroc) else "needs both hallucinated and correct words"
        rows.append(
            {
                "signal": name,
                "auroc": auroc,
                "low": low,
                "high": high,
                "separation": abs(auroc - 0.5),
                "n_hallucinated": int(usable.hallucinated.sum()),
                "n_correct": int((~usable.hallucinated.astype(bool)).sum()),
                "n_items": int(usable.order.nunique()),
                "what": what,
                "note": note,
            }
        )
    frame = pd.DataFrame(rows)
    frame.attrs.update(confidence=confidence, n_resamples=n_resamples)
    return frame


def plot_signal_separation(separation: pd.DataFrame) -> Figure:
    """Each signal's AUROC for hallucinated vs correct words, with its interval (0.5: chance)."""
    if separation.empty or not {"signal", "auroc", "low", "high"} <= set(separation.columns):
        raise TraceFormatError("This table is not from signal_separation.")
    shown = separation[separation.auroc.notna()]
    figure = Figure(figsize=(5.0, 0.4 * max(len(shown), 1) + 1.2), layout="constrained")
    axis = figure.subplots()
    positions = np.arange(len(shown))
    errors = [shown.auroc - shown.low, shown.high - shown.auroc]
    axis.errorbar(shown.auroc, positions, xerr=errors, fmt="o", color="tab:purple", capsize=3)
    axis.axvline(0.5, color="0.6", linewidth=0.8)
    axis.set_yticks(positions, shown.signal)
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    level = round(100 * separation.attrs.get("confidence", 0.95))
    axis.set_xlabel("AUROC, hallucinated vs correct object words")
    axis.set_title(f"0.5 = chance; {level} % intervals over items", fontsize=9)
    return figure
