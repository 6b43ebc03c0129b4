"""The one-image report's section on where the image goes: attention on the image per token and
layer, an attention-knockout sweep for the first generated token, and one word through the
image-token lens on the patch grid."""

import html
from collections.abc import Sequence
from typing import Any

import torch

from mmlens.analyses.flow import knockout_sweep, plot_knockout_sweep
from mmlens.analyses.image_lens import image_token_lens, plot_word_on_image
from mmlens.analyses.visual_attention import plot_trace_visual_attention
from mmlens.errors import ConfigError
from mmlens.report.sections import figure_section
from mmlens.trace import Trace
from mmlens.words import first_token_id


def lens_word(model: Any, trace: Trace, preferred: Sequence[str] = ()) -> str | None:
    """The word to look for in the image tokens: the first of `preferred` the text names, else
    the first generated word of three letters or more that has a token of its own."""
    said = trace.text.lower()
    candidates = [w for w in preferred if w.lower() in said]
    candidates += [t.strip() for t in trace.tokens if t.strip().isalpha() and len(t.strip()) >= 3]
    for word in candidates:
        if first_token_id(model.tokenizer, word) is not None:
            return word
    return None


def image_flow_section(
    model: Any, picture: Any, prompt: str, trace: Trace, preferred: Sequence[str] = ()
) -> str:
    """Visual attention, the knockout sweep and the image-token lens strip, as HTML sections."""
    parts = ["<section><h2>Where the image goes</h2></section>"]
    if trace.image_attention is not None:
        parts.append(
            figure_section(
                "Attention on the image, per generated token and layer",
                plot_trace_visual_attention(trace),
                "The share of the predicting position's attention that goes to image tokens, "
                "mean over heads (mmlens.analyses.visual_attention).",
            )
        )
    sweep = knockout_sweep(model, picture, prompt, progress=False)
    parts.append(
        figure_section(
            "Attention knockout: where the image reaches the first token",
            plot_knockout_sweep(sweep),
            f"{sweep.attrs['metric']} at the last prompt position when each edge is cut in a "
            f"window of {sweep.attrs['window']} blocks, against the uncut run "
            "(mmlens.analyses.flow). image->last: the last position cannot read the image "
            "tokens; image->prompt: the prompt's text cannot; prompt->last: the last position "
            "cannot read the prompt's text.",
        )
    )
    word = lens_word(model, trace, preferred)
    if word is None:
        return "\n".join(parts)
    try:
        residual = ("resid_pre", "resid_post")
        with torch.no_grad():
            _, cache = model.run_with_cache(
                picture, prompt, names_filter=lambda name: name.endswith(residual)
            )
        strip = plot_word_on_image(image_token_lens(model, cache, [word]), word)
    except ConfigError as error:  # e.g. tiles with no single patch grid (LLaVA-NeXT)
        parts.append(
            f"<section><h2>{html.escape(repr(word))} in the image tokens</h2>"
            f"<p>Not drawn: {html.escape(str(error))}</p></section>"
        )
    else:
        parts.append(
            figure_section(
                f"{word!r} in the image tokens, layer by layer",
                strip,
                f"The probability the lens gives {word!r} at each image patch "
                "(mmlens.analyses.image_lens).",
            )
        )
    return "\n".join(parts)
