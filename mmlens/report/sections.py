"""HTML pieces of the report: embedded figures and images, the text coloured by stage."""

import base64
import html
import io

import numpy as np
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


#: Swatches dark enough to need white text on them.
_DARK_FROM = 4
NO_CRITICAL = "#eeeeee"


def _bin(layer: int, last: int) -> int:
    """The colour (index into STAGE_COLOURS) of a critical layer in a model of layers 0..last."""
    return layer * len(STAGE_COLOURS) // (last + 1)


def _swatch(colour: str, text: str, title: str = "") -> str:
    dark = colour in STAGE_COLOURS[_DARK_FROM:]
    style = f"background:{colour}" + (";color:white" if dark else "")
    hover = f' title="{html.escape(title)}"' if title else ""
    return f'<span class="tok" style="{style}"{hover}>{text}</span>'


def critical_layer_legend(last: int) -> str:
    """One swatch per colour in use, labelled with the critical layers it stands for (a range
    where several share it), and the grey of tokens without a critical layer."""
    swatches = []
    for index, colour in enumerate(STAGE_COLOURS):
        layers = [layer for layer in range(last + 1) if _bin(layer, last) == index]
        if layers:
            label = str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"
            swatches.append(_swatch(colour, label))
    swatches.append(_swatch(NO_CRITICAL, "none"))
    return (
        f"<p><small>Critical layer (pair l = layers l -> l+1; hover a token for its own): "
        f"{' '.join(swatches)} (grey: the token never settles, so it has no critical layer)"
        "</small></p>"
    )


def tokens_by_critical_layer(trace: Trace, stages: pd.DataFrame) -> str:
    """The generated text, each token's background showing its critical layer (hover for it)."""
    last = max(int(trace.layers[-1]), 1)
    spans = []
    for row in stages.itertuples():
        layer = row.critical_layer
        if pd.isna(layer):
            colour, title = NO_CRITICAL, "no critical layer"
        else:
            colour = STAGE_COLOURS[_bin(int(layer), last)]
            title = f"critical layer {int(layer)}"
        if row.mutation_layers:
            title += f"; mutation at {', '.join(map(str, row.mutation_layers))}"
        spans.append(_swatch(colour, html.escape(shown(str(row.token))), title))
    text = "".join(spans)  # each token carries its own leading space, as the text reads
    return f'<p class="tokens">{text}</p>{critical_layer_legend(last)}'


def _cell(value: object) -> object:
    """A table cell as a person reads it: lists of layers as "6, 7" (or "none"), yes / no,
    n/a for a missing value."""
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return value


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its non-numeric columns (and booleans) written for people (`_cell`)."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_float_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype(object).map(_cell)
    return out


def table_html(frame: pd.DataFrame) -> str:
    """A table for people: 3 significant digits, "n/a" where a value could not be computed,
    lists and yes / no written out (`readable`)."""
    return readable(frame).to_html(
        index=True, border=0, classes="table", float_format=lambda v: f"{v:.3g}", na_rep="n/a"
    )
