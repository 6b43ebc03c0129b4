"""HTML pieces of the report: embedded figures and images, the text coloured by stage."""

import base64
import html
import io

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from mmlens.token_text import shown
from mmlens.trace import Trace

STAGE_COLOURS = ("#fde0dd", "#fcc5c0", "#fa9fb5", "#f768a1", "#dd3497", "#ae017e", "#7a0177")


def png_data_uri(figure: Figure | Image.Image) -> str:
    """A figure or image as a base64 `data:` URI (so the report needs no side files)."""
    buffer = io.BytesIO()
    if isinstance(figure, Figure):
        figure.savefig(buffer, format="png", dpi=110)
    else:
        figure.save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_section(
    title: str, figure: Figure | Image.Image, note: str = "", width: str = ""
) -> str:
    style = f' style="width:{width}; image-rendering:pixelated"' if width else ""
    caption = f"<p>{html.escape(note)}</p>" if note else ""
    return (
        f"<section><h2>{html.escape(title)}</h2>{caption}"
        f'<img class="figure" alt="{html.escape(title)}" src="{png_data_uri(figure)}"{style}>'
        "</section>"
    )


def tokens_by_critical_layer(trace: Trace, stages: pd.DataFrame) -> str:
    """The generated text, each token's background showing its critical layer (hover for it)."""
    last = max(int(trace.layers[-1]), 1)
    spans = []
    for row in stages.itertuples():
        layer = row.critical_layer
        if pd.isna(layer):
            colour, title = "#eeeeee", "no critical layer"
        else:
            colour = STAGE_COLOURS[int(layer) * len(STAGE_COLOURS) // (last + 1)]
            title = f"critical layer {int(layer)}"
        if row.mutation_layers:
            title += f"; mutation at {', '.join(map(str, row.mutation_layers))}"
        spans.append(
            f'<span class="tok" style="background:{colour}" title="{html.escape(title)}">'
            f"{html.escape(shown(str(row.token)))}</span>"
        )
    steps = len(STAGE_COLOURS)
    legend = " ".join(
        f'<span class="tok" style="background:{colour}">{i * (last + 1) // steps}+</span>'
        for i, colour in enumerate(STAGE_COLOURS)
    )
    text = "".join(spans)  # each token carries its own leading space, as the text reads
    return f'<p class="tokens">{text}</p><p><small>Critical layer: {legend}</small></p>'


def table_html(frame: pd.DataFrame) -> str:
    """A table for people: 3 significant digits, "n/a" where a value could not be computed."""
    return frame.to_html(
        index=True, border=0, classes="table", float_format=lambda v: f"{v:.3g}", na_rep="n/a"
    )
