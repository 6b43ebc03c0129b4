"""Object words of a trace, judged against the image's truth, and the figure of one of them."""

from dataclasses import replace

import numpy as np
from _support import staged_logprobs, trace_from_logprobs

from mmlens.analyses.hallucination import (
    ObjectVocabulary,
    plot_word_against_truth,
    trace_object_words,
)


def _trace(tokens):
    planted = trace_from_logprobs(staged_logprobs(n_steps=len(tokens), n_layers=9, n_vocab=40),
                                  rivals={"circle": 7})  # fmt: skip
    return replace(planted, tokens=tokens)


def test_object_words_are_found_with_their_first_step_and_judged():
    tokens = [" a", " green", " tri", "angle", " and", " two", " squares", " ."]
    words = trace_object_words(
        _trace(tokens), ["square", "circle"], ObjectVocabulary.from_words(["triangle", "square"])
    )
    assert words.values.tolist() == [
        [2, "triangle", "triangle", True],
        [6, "squares", "square", False],
    ]


def test_the_figure_draws_the_word_and_each_truth(tmp_path):
    trace = _trace([" a", " green", " triangle"])
    figure = plot_word_against_truth(trace, 2, {"circle": 7, "unrecorded": 9}, 3, (5,))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert {"generated 'triangle'", "true 'circle'", "critical layer", "mutation"} <= set(lines)
    np.testing.assert_allclose(
        lines["true 'circle'"].get_ydata(), np.exp(trace.rival_logprobs[2, :, 0]), rtol=1e-6
    )
    np.testing.assert_allclose(lines["generated 'triangle'"].get_ydata(), np.exp(trace.logprob[2]))
    assert "true 'unrecorded'" not in lines  # not a rival of this trace: nothing to draw
    figure.savefig(tmp_path / "word.png")
