"""The data-set report: one offline HTML page on the mutation-layer link over a run.

Sections: what was measured (items, words, settings), the benchmark's metrics, the link's rates
with intervals, the mutation-layer histograms split by hallucinated/correct and wrong/right,
which per-layer signal (mutation, visual attention, DoLa's and DeCo's) separates hallucinated
words best and visual attention by layer (when the run recorded them),
skipping layers as mitigation (metrics against skip setting), and example items, each
linked to its per-item view further down the page (the caption with hallucinated words marked,
and every object word's stages and probability against the true object's).
"""

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mmlens.analyses.link import plot_mutation_layers
from mmlens.analyses.mitigation import plot_mitigation
from mmlens.analyses.stages import PAIR_NOTE
from mmlens.benchmarks.scores import Scores
from mmlens.html import page
from mmlens.report.sections import figure_section, png_data_uri, table_html
from mmlens.report.signals import separation_section, visual_attention_section

STYLE = (
    ".hal { background: #fcc; } .ok { background: #cfc; } .mut { text-decoration: underline; } "
    "table.table td, table.table th { padding: 2px 8px; text-align: right; } "
    "img.figure { max-width: 100%; } div.wide { overflow-x: auto; }"
)


def _marked_caption(output: str, words: pd.DataFrame) -> str:
    """The caption's object words coloured (red hallucinated, green correct; underlined if it
    mutates), matched in order of appearance."""
    pieces, rest = [], output
    for row in words.itertuples():
        at = rest.lower().find(row.word.lower())
        if at < 0:
            continue
        css = ("hal" if row.hallucinated else "ok") + (" mut" if row.has_mutation else "")
        layers = ", ".join(map(str, row.mutation_layers)) or "none"
        title = f"critical layer {row.critical_layer}; mutation layers {layers}"
        pieces.append(html.escape(rest[:at]))
        pieces.append(
            f'<span class="{css}" title="{html.escape(title)}">'
            f"{html.escape(rest[at : at + len(row.word)])}</span>"
        )
        rest = rest[at + len(row.word) :]
    return "".join(pieces) + html.escape(rest)


def _probability_figure(tokens: pd.DataFrame, words: pd.DataFrame) -> Figure:
    """Each object word's probability (solid) and the best true object's (dashed) by layer."""
    figure = Figure(figsize=(6, 2.6), layout="constrained")
    axis = figure.subplots()
    for index, row in enumerate(words.itertuples()):
        rows = tokens[tokens.step == row.step].sort_values("layer")
        colour = f"C{index % 10}"
        label = f"{row.word}, step {row.step} ({'hallucinated' if row.hallucinated else 'correct'})"
        axis.plot(rows.layer, rows.prob, color=colour, label=label)
        if "truth_logprob" in rows and rows.truth_logprob.notna().any():
            axis.plot(rows.layer, np.exp(rows.truth_logprob), color=colour, ls="--", lw=1)
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_ylabel("probability")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=6, ncol=2)
    return figure


def _truth_text(truth: object) -> str:
    """A run's JSON truth ('["dog", "grass"]' or '"yes"') as plain words: dog, grass."""
    try:
        value = json.loads(str(truth))
    except ValueError:
        return str(truth)
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _item_view(item: pd.Series, words: pd.DataFrame, tokens: pd.DataFrame) -> str:
    columns = ["step", "word", "object", "hallucinated", "critical_layer", "mutation_layers"]
    columns += ["prob_final", "truth_prob_final", "truth_ahead_before_mutation"]
    return (
        f'<section id="item-{item.id}"><h3>Item {item.id}</h3>'
        f"<p><b>Prompt</b>: {html.escape(str(item.prompt))}<br><b>Truth</b>: "
        f"{html.escape(_truth_text(item.truth))}<br><b>Output</b>: "
        f"{_marked_caption(str(item.output), words)}</p>"
        f"{table_html(words[columns].set_index('step'))}"
        "<p>Object words' probability by layer (dashed: the best true object):</p>"
        f'<img class="figure" src="{png_data_uri(_probability_figure(tokens, words))}">'
        "</section>"
    )


def _metrics_section(scores: Scores) -> str:
    metrics = pd.Series(
        {k: np.nan if v is None else v for k, v in scores.metrics.items()}, name="value"
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in scores.notes)
    counts = ", ".join(f"{k} {v}" for k, v in scores.counts.items())
    return (
        f"<section><h2>Benchmark metrics ({html.escape(scores.benchmark)})</h2>"
        f"{table_html(metrics.to_frame())}<p>{html.escape(counts)}</p><ul>{notes}</ul></section>"
    )


def _mitigation_section(table: pd.DataFrame) -> str:
    note = (
        "The same items rerun with blocks skipped. changed: share of outputs that differ; "
        "similarity: word-level similarity to the original; rate_change: the object words' "
        "hallucination rate minus the original's, with a paired 95 % bootstrap interval "
        "(change_low, change_high); removed / added: hallucinated objects that went / came."
    )
    figures = [plot_mitigation(table, "hallucination_rate")]
    for metric in ("chair", "chair_i", "f1"):  # AMBER / CHAIR / POPE's headline metric
        if metric in table and table[metric].notna().any():
            figures.append(plot_mitigation(table, metric))
            break
    return (
        f"<section><h2>Skipping layers as mitigation</h2><p>{html.escape(note)}</p>"
        f'<div class="wide">{table_html(table.set_index("setting"))}</div>'
        + "".join(f'<img class="figure" src="{png_data_uri(f)}">' for f in figures)
        + "</section>"
    )


def _examples(mentions: pd.DataFrame, n_examples: int) -> list[int]:
    """Orders of example items: hallucinated words that mutate first, then other hallucinations,
    then items with only correct words."""
    ranked = mentions.assign(
        rank=np.where(mentions.hallucinated, np.where(mentions.has_mutation, 0, 1), 2)
    )
    best = ranked.groupby("order")["rank"].min().sort_values(kind="stable")
    chosen: list[int] = []
    for rank in (0, 1, 2):
        chosen += best[best == rank].index[: max(1, n_examples // 3)].tolist()
    return chosen[:n_examples]


def write_link_report(
    path: str | Path,
    items: pd.DataFrame,
    tokens: pd.DataFrame,
    mentions: pd.DataFrame,
    answers: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    scores: Scores | None = None,
    mitigation: pd.DataFrame | None = None,
    separation: pd.DataFrame | None = None,
    attention_curves: pd.DataFrame | None = None,
    title: str = "mmlens: mutation layers and hallucination",
    n_examples: int = 6,
) -> Path:
    """Write the one-page report (`scores`: the benchmark's metrics; `mitigation`: the skip
    settings' table from `analyses.mitigation`; `separation`: `analyses.signals`'s
    signal_separation; `attention_curves`: `analyses.visual_attention`'s curves); figures are
    embedded, so the file stands alone."""
    path = Path(path)
    ran = items[items.status == "ok"]
    facts = pd.Series(
        {
            "benchmark": ", ".join(sorted(map(str, items.benchmark.dropna().unique()))),
            "items run / failed": f"{len(ran)} / {len(items) - len(ran)}",
            "captions / yes-no questions": f"{(ran.task == 'generative').sum()} / "
            f"{(ran.task == 'discriminative').sum()}",
            "object words (hallucinated)": f"{len(mentions)} ({int(mentions.hallucinated.sum())})",
            "layer numbers": f"0 = embeddings; critical and mutation layers: {PAIR_NOTE}",
        },
        name="",
    )
    body = [
        "<section><h2>What was measured</h2>",
        table_html(facts.to_frame()),
        "</section>",
    ]
    if scores is not None:
        body += [_metrics_section(scores)]
    body += [
        "<section><h2>The link, with 95 % bootstrap intervals over items</h2>",
        "<p>Rates pool words over items; intervals resample items, so the words of one caption "
        "stay together. An interval that contains 0 for a difference means the data do not "
        "show one.</p>",
        table_html(summary.set_index("statistic")) if len(summary) else "<p>No data.</p>",
        "</section>",
    ]
    if mentions.has_mutation.any():
        body.append(
            figure_section(
                "Where object words first mutate", plot_mutation_layers(mentions, "hallucinated")
            )
        )
    scored = answers[answers.wrong.notna()] if len(answers) else answers
    if len(scored) and scored.has_mutation.any():
        body.append(
            figure_section(
                "Where yes-no answers first mutate", plot_mutation_layers(scored, "wrong")
            )
        )
    if separation is not None and len(separation):
        body.append(separation_section(separation))
    if attention_curves is not None and len(attention_curves):
        body.append(visual_attention_section(attention_curves))
    if mitigation is not None and len(mitigation):
        body.append(_mitigation_section(mitigation))
    chosen = _examples(mentions, n_examples) if len(mentions) else []
    by_order = items.set_index("order")
    ids = [int(by_order.loc[order, "id"]) for order in chosen]
    links = " ".join(f'<a href="#item-{i}">item {i}</a>' for i in ids)
    body.append(f"<section><h2>Examples</h2><p>{links or 'none'}</p>")
    for order in chosen:
        words = mentions[mentions.order == order]
        body.append(_item_view(by_order.loc[order], words, tokens[tokens.order == order]))
    body.append("</section>")
    path.write_text(page(title, "\n".join(body), style=STYLE), encoding="utf-8")
    return path
