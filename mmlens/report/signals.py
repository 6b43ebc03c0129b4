"""The data-set report's sections on signals other than mutation: which per-layer signal tells
hallucinated object words from correct ones (`analyses.signals`), and visual attention by layer
(`analyses.visual_attention`)."""

import pandas as pd

from mmlens.analyses.signals import plot_signal_separation
from mmlens.analyses.visual_attention import plot_visual_attention_curves
from mmlens.report.sections import figure_section, table_html


def separation_section(separation: pd.DataFrame) -> str:
    """The signals' AUROCs, as a figure and a table."""
    shown = separation.set_index("signal")[
        ["auroc", "low", "high", "n_hallucinated", "n_correct", "n_items", "what", "note"]
    ]
    parts = [
        "<section><h2>Which layer signal separates hallucinated words</h2>",
        "<p>For each signal, the chance that a hallucinated object word scores higher than a "
        "correct one (AUROC; 0.5 is chance, below 0.5 means hallucinated words score lower), "
        "with 95 % bootstrap intervals that resample items. Each signal is read at the word's "
        "first token; see <code>mmlens.analyses.signals</code> for the definitions and layer "
        "bands.</p>",
        table_html(shown),
        "</section>",
    ]
    if shown.auroc.notna().any():
        parts.append(figure_section("AUROC by signal", plot_signal_separation(separation)))
    return "\n".join(parts)


def visual_attention_section(curves: pd.DataFrame) -> str:
    """Mean visual attention per layer, hallucinated vs correct words."""
    return figure_section(
        "Visual attention by layer, hallucinated vs correct object words",
        plot_visual_attention_curves(curves),
    )
