"""Build the report: trace once, run every analysis, write `report.html` and the raw Trace.

The report goes to a temporary folder beside `out` and is moved into place only when complete, so
an interrupted run (Ctrl-C) never leaves a half-written report that looks finished.
"""

import html
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmlens.analyses import divergence, skip, stages, token_probs, trajectories
from mmlens.analyses.hallucination import ObjectVocabulary
from mmlens.errors import ConfigError
from mmlens.html import circuitsvis_parts, page
from mmlens.inputs import ImageLike, load_image
from mmlens.outputs import finish_folder, start_folder
from mmlens.progress import progress_bar
from mmlens.report.flow import image_flow_section
from mmlens.report.hallucination import hallucination_section
from mmlens.report.sections import figure_section, table_html, tokens_by_critical_layer
from mmlens.trace import Trace
from mmlens.words import first_token_id

STYLE = (
    ".tok { padding: 1px 2px; margin: 1px; border-radius: 3px; display: inline-block;"
    " white-space: pre; }"
    " .tokens { line-height: 2; } img.figure { max-width: 100%; }"
    " section { margin-bottom: 2.5em; } .table td, .table th { padding: 2px 8px; }"
    # circuitsvis pads each token view by 350 px to make room for its hover table; that table
    # floats over what follows, so the padding is only empty space
    ' #interactive div[style*="padding-bottom: 350px"] { padding-bottom: 0.5em !important; }'
)


@dataclass(frozen=True)
class ReportSettings:
    """What to generate and show. With `truth` (the objects really in the image) and `objects`
    (the words that name objects), the report judges each generated object word and shows the
    hallucinated ones against the truth."""

    prompt: str = "Please describe this image in detail."
    max_new_tokens: int = 64
    rivals: Sequence[str] = field(default_factory=tuple)
    lens: str = "normed"
    truth: Sequence[str] = field(default_factory=tuple)
    objects: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}; it must be >= 1.")
        if bool(self.truth) != bool(self.objects):
            raise ConfigError(
                f"truth={list(self.truth)}, objects={list(self.objects)}: give both (the objects "
                "in the image, and the words that name objects) or neither."
            )


DEFAULT_SETTINGS = ReportSettings()


def _summary(trace: Trace, found: stages.TraceStages) -> str:
    facts = {
        "tokens": trace.n_steps,
        "median critical layer": found.critical_layer,
        "mutation layers (common)": ", ".join(map(str, found.mutation_layers)) or "none",
        "tokens with a mutation": f"{found.mutation_fraction:.0%}",
        "lens": trace.settings["lens"],
        "layer numbers": f"0 = embeddings; critical and mutation layers: {stages.PAIR_NOTE}",
    }
    frame = pd.DataFrame.from_dict(facts, orient="index", columns=["value"])
    return f"<section><h2>Stage summary</h2>{table_html(frame)}</section>"


#: Paper Fig. 2 draws the first this many steps (one panel each).
FIG2_STEPS = 20


def _fig2_note(trace: Trace) -> str:
    shown = min(trace.n_steps, FIG2_STEPS)
    which = (
        f"All {trace.n_steps} generated tokens"
        if shown == trace.n_steps
        else f"The first {shown} of the {trace.n_steps} generated tokens (steps 0-{shown - 1}; "
        "the trace in trace/ has them all)"
    )
    return (
        f"{which}, one panel each: the filled curve is the generated token's probability; dashed "
        "lines are the other tokens that are top-1 at some late layer (the paper's candidates)."
    )


def _skip_section(skips: pd.DataFrame | None) -> str:
    body = (
        skip.skip_html(skips)
        if skips is not None
        else "<p>No skip set applies: no critical layer was detected.</p>"
    )
    return f"<section><h2>Skip experiments (paper Fig. 5)</h2>{body}</section>"


def write_report(
    model: Any,
    image: ImageLike,
    out: str | Path,
    settings: ReportSettings = DEFAULT_SETTINGS,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Run every analysis on one image and prompt; write `out/report.html` and `out/trace/`."""
    out = Path(out)
    picture = load_image(image)
    vocabulary = ObjectVocabulary.from_words([*settings.objects, *settings.truth])
    truth_ids = {
        word: token
        for word in settings.truth
        if (token := first_token_id(model.tokenizer, word)) is not None
    }
    work = start_folder(out, force)
    try:
        with progress_bar(total=7, desc="report", disable=not progress) as bar:
            bar.set_postfix_str("tracing")
            trace = model.trace(
                picture,
                settings.prompt,
                max_new_tokens=settings.max_new_tokens,
                rivals=[*settings.rivals, *truth_ids.values()],
                lens=settings.lens,
                keep_features=True,
                visual_attention=True,
                progress=False,
            )
            trace.save(work / "trace")
            bar.update()
            bar.set_postfix_str("stages")
            table = stages.token_stages(trace)
            found = stages.summarize_stages(table)
            bar.update()
            bar.set_postfix_str("figures")
            figures = [
                figure_section(
                    "Token probabilities across layers (paper Fig. 2)",
                    token_probs.plot_token_probabilities(
                        trace, range(min(trace.n_steps, FIG2_STEPS)), candidates="paper"
                    ),
                    _fig2_note(trace),
                ),
                figure_section(
                    "Jensen-Shannon divergence of adjacent layers (paper Fig. 4)",
                    divergence.plot_jsd_heatmap(trace),
                ),
                figure_section("Stages", stages.plot_stages(trace)),
            ]
            if settings.lens == "paper":
                figures.insert(
                    2,
                    figure_section(
                        "The paper code's divergence, columns scaled (paper mode of Fig. 4)",
                        divergence.plot_jsd_heatmap(trace, mode="paper"),
                    ),
                )
            if trace.rival_words:
                figures.insert(
                    1, figure_section("Rival words (paper Fig. 3)", token_probs.plot_rivals(trace))
                )
            bar.update()
            bar.set_postfix_str("trajectories")
            maps = trajectories.trace_trajectories(trace, groups=stages.layer_groups(trace, found))
            figures.append(
                figure_section(
                    "Feature trajectories (paper Fig. 6)", trajectories.plot_trajectories(maps)
                )
            )
            bar.update()
            bar.set_postfix_str("where the image goes")
            absent = [word for word in settings.objects if word not in settings.truth]
            flow = image_flow_section(  # a hallucinated word first, if the text names one
                model, picture, settings.prompt, trace, [*absent, *settings.truth]
            )
            bar.update()
            bar.set_postfix_str("skip experiments")
            skips = None
            if skip.skip_plan(found, model.n_blocks):
                skips = skip.skip_experiments(
                    model,
                    picture,
                    settings.prompt,
                    stages=found,
                    max_new_tokens=settings.max_new_tokens,
                    truth=settings.truth or None,
                    vocabulary=vocabulary if settings.truth else None,
                )
            bar.update()
            bar.set_postfix_str("writing")
            views, script = circuitsvis_parts(token_probs.topk_components(trace))
            body = "\n".join(
                [
                    f"<p><b>Model</b> {html.escape(str(model.name))} &nbsp; "
                    f"<b>Prompt</b> {html.escape(settings.prompt)}</p>",
                    figure_section("Image", picture, width="256px"),
                    "<section><h2>Generated text, by critical layer</h2>"
                    f"{tokens_by_critical_layer(trace, table)}</section>",
                    hallucination_section(
                        trace, table, skips, settings.truth, vocabulary, truth_ids
                    )
                    if settings.truth
                    else "",
                    _summary(trace, found),
                    *figures,
                    flow,
                    _skip_section(skips),
                    '<section id="interactive"><h2>Per-layer top-k (interactive)</h2>'
                    f"{views}</section>",
                ]
            )
            title = f"mmlens report: {trace.text[:60]}"
            (work / "report.html").write_text(page(title, body, script, STYLE), encoding="utf-8")
            bar.update()
        finish_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / "report.html"
