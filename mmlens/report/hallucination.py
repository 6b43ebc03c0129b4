"""The report's hallucination section: with the image's true objects known, each hallucinated
object word, its probability across layers against the true objects', its stages, and whether
each skip experiment removes it."""

import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from mmlens.analyses.hallucination import (
    ObjectVocabulary,
    plot_word_against_truth,
    trace_object_words,
)
from mmlens.report.sections import png_data_uri
from mmlens.trace import Trace

#: At most this many hallucinated words get a figure of their own.
MAX_SHOWN = 3


def _layers(value: object) -> str:
    return ", ".join(map(str, value)) if value else "none"


def _skip_effect(skips: pd.DataFrame | None, name: str) -> str:
    """What each skip set did to the hallucinated object `name`."""
    if skips is None:
        return "No skip set applies (no critical layer was detected), so no skip was tried."
    effects = []
    for row in skips.itertuples():
        if row.name == "original" or row.hallucinated is None:
            continue
        verdict = "still hallucinated" if name in row.hallucinated else "gone"
        effects.append(f"{row.name} (blocks {list(row.skip_blocks)}): {verdict}")
    return "; ".join(effects) + "." if effects else "No skip set was tried."


def hallucination_section(
    trace: Trace,
    stages: pd.DataFrame,
    skips: pd.DataFrame | None,
    truth: Sequence[str],
    vocabulary: ObjectVocabulary,
    truth_ids: Mapping[str, int],
) -> str:
    """HTML: which generated object words are hallucinated, and for each (up to MAX_SHOWN) its
    probability against the true objects', its critical and mutation layers, and the skips."""
    words = trace_object_words(trace, truth, vocabulary)
    said = ", ".join(f"{w.word!r} (step {w.step})" for w in words.itertuples()) or "none"
    intro = (
        f"<p>In the image: {html.escape(', '.join(truth))}. Object words generated: "
        f"{html.escape(said)}.</p>"
    )
    wrong = words[words.hallucinated]
    if wrong.empty:
        body = "<p>None of the generated object words is hallucinated.</p>"
        return f"<section><h2>Hallucinated words</h2>{intro}{body}</section>"
    parts = [intro]
    for word in wrong.head(MAX_SHOWN).itertuples():
        row = stages.iloc[word.step]
        critical = None if pd.isna(row.critical_layer) else int(row.critical_layer)
        figure = plot_word_against_truth(trace, word.step, truth_ids, critical, row.mutation_layers)
        final = math.exp(float(trace.logprob[word.step, -1]))
        named = "" if word.word == word.object else f" names {word.object!r}, which"
        facts = (
            f"{word.word!r} (step {word.step}){named} is not in the image "
            f"(probability {final:.2f} at the last layer). "
            f"Critical layer: {'none' if critical is None else critical}; mutation layers: "
            f"{_layers(row.mutation_layers)}. Skips: {_skip_effect(skips, word.object)}"
        )
        parts.append(
            f"<h3>{html.escape(word.word)}</h3><p>{html.escape(facts)}</p>"
            f'<img class="figure" alt="{html.escape(word.word)} against the true objects" '
            f'src="{png_data_uri(figure)}">'
        )
    if len(wrong) > MAX_SHOWN:
        parts.append(f"<p>{len(wrong) - MAX_SHOWN} more hallucinated words not drawn.</p>")
    return f"<section><h2>Hallucinated words</h2>{''.join(parts)}</section>"
