"""Skip as mitigation over a data set: the same items run with blocks skipped, against the
original run (paper section 4.2's skip.1-3, measured over a benchmark instead of examples).

For each setting: how many outputs changed and their word-level similarity to the original
(`analyses.skip.text_similarity`), the object words' hallucination rate (hallucinated object
words / object words, as `analyses.link.object_mentions` counts them) and its change from the
original with a paired bootstrap interval (items resampled, both runs together), the
hallucinated objects removed and added, and, when given, the benchmark's own metrics.
"""

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.analyses.intervals import clustered_rates
from mmlens.analyses.judges import Judge
from mmlens.analyses.link import object_mentions
from mmlens.analyses.skip import text_similarity

Run = tuple[pd.DataFrame, pd.DataFrame]  # a run's items and tokens tables
Metrics = Callable[[pd.DataFrame], Mapping[str, float | None]]


def _hallucinated(mentions: pd.DataFrame) -> dict[int, set[str]]:
    """item id -> hallucinated objects."""
    chosen = mentions[mentions.hallucinated]
    return {int(k): set(v) for k, v in chosen.groupby("id").object}


def _counts(mentions: pd.DataFrame, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    grouped = mentions.groupby("id")
    words = grouped.size().reindex(ids, fill_value=0).to_numpy(dtype=float)
    hallucinated = grouped.hallucinated.sum().reindex(ids, fill_value=0).to_numpy(dtype=float)
    return hallucinated, words


def mitigation_table(
    original: Run,
    variants: Mapping[str, tuple[Run, list[int]]],
    judge: ObjectVocabulary | Judge,
    metrics: Metrics | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row for the original and one per variant (name -> (run, skipped blocks)), over the
    caption items that ran in every run; `judge` as in `object_mentions`. See the module
    docstring for the columns' meaning."""
    runs = {"original": (original, []), **variants}
    ok = [set(items[items.status == "ok"].id) for (items, _), _ in runs.values()]
    shared = sorted(set.intersection(*ok)) if ok else []
    base_items, _ = original
    base_text = base_items.set_index("id").output
    captions = base_items[base_items.id.isin(shared) & (base_items.task == "generative")]
    caption_ids = sorted(captions.id)
    mentions_of = {  # each run's captions judged once
        name: object_mentions(items[items.id.isin(caption_ids)], tokens, judge)
        for name, ((items, tokens), _) in runs.items()
    }
    base_hal, base_words = _counts(mentions_of["original"], caption_ids)
    base_objects = _hallucinated(mentions_of["original"])
    rows = []
    for name, ((items, _), blocks) in runs.items():
        mine = items[items.id.isin(shared)].set_index("id")
        texts = mine.output.reindex(shared)
        mentions = mentions_of[name]
        hal, words = _counts(mentions, caption_ids)
        objects = _hallucinated(mentions)
        row: dict[str, Any] = {
            "setting": name,
            "skip_blocks": tuple(blocks),
            "items": len(shared),
            "changed": float((texts != base_text.reindex(shared)).mean()) if shared else np.nan,
            "similarity": float(np.mean([text_similarity(base_text[i], texts[i]) for i in shared]))
            if shared
            else np.nan,
            "object_words": int(words.sum()),
            "hallucination_rate": hal.sum() / words.sum() if words.sum() else np.nan,
        }
        if caption_ids:
            _, change = clustered_rates(
                np.stack([hal, base_hal], axis=1),
                np.stack([words, base_words], axis=1),
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            row.update(rate_change=change.estimate, change_low=change.low, change_high=change.high)
        row["removed"] = sum(
            len(base_objects.get(i, set()) - objects.get(i, set())) for i in caption_ids
        )
        row["added"] = sum(
            len(objects.get(i, set()) - base_objects.get(i, set())) for i in caption_ids
        )
        if metrics is not None:
            row.update(metrics(items[items.id.isin(shared)]))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_mitigation(table: pd.DataFrame, metric: str = "hallucination_rate") -> Figure:
    """`metric` for the original and each skip setting; the hallucination rate's change carries
    its bootstrap interval."""
    figure = Figure(figsize=(6, 3), layout="constrained")
    axis = figure.subplots()
    values = table[metric].astype(float)
    axis.bar(table.setting, values, color=["tab:gray"] + ["tab:blue"] * (len(table) - 1))
    if metric == "hallucination_rate" and "change_low" in table:
        base = values.iloc[0]
        low = base + table.change_low.astype(float)
        high = base + table.change_high.astype(float)
        axis.errorbar(
            table.setting, values, yerr=[values - low, high - values], fmt="none", color="black"
        )
    axis.set_ylabel(metric)
    axis.set_xlabel("setting (blocks skipped: see the table)")
    return figure
