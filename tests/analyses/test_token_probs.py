"""Token-level analysis on planted traces and on a real tiny-model trace."""

import re

import numpy as np
import pytest
from _support import staged_logprobs, trace_from_logprobs

from mmlens.analyses.token_probs import (
    default_late_layer,
    late_layer_candidates,
    plot_rivals,
    plot_token_probabilities,
    rival_probabilities,
    topk_view,
)


@pytest.fixture(scope="module")
def planted():
    logprobs = staged_logprobs(n_steps=4, critical=18, mutation=(30,))
    return logprobs, trace_from_logprobs(logprobs, rivals={"w1": 1, "w9": 9})


def test_paper_candidates_follow_late_top1_tokens(planted):
    logprobs, trace = planted
    assert default_late_layer(trace) == 20
    table = late_layer_candidates(trace)
    for step in range(trace.n_steps):
        expected = set(logprobs[step, 20:].argmax(-1).tolist()) | {int(trace.token_ids[step])}
        rows = table[table.step == step]
        assert set(rows.candidate_id) == expected
        for candidate, group in rows.groupby("candidate_id"):
            np.testing.assert_allclose(group.prob, np.exp(logprobs[step, :, candidate]), rtol=1e-5)
        assert rows[rows.is_generated].candidate_id.unique().tolist() == [trace.token_ids[step]]


def test_rival_probabilities_are_the_planted_ones(planted):
    logprobs, trace = planted
    table = rival_probabilities(trace)
    assert len(table) == trace.n_steps * len(trace.layers) * 2
    row = table[(table.step == 2) & (table.layer == 25) & (table.rival == "w9")]
    assert row.prob.item() == pytest.approx(np.exp(logprobs[2, 25, 9]), rel=1e-5)


def test_rivals_required(planted):
    logprobs, _ = planted
    with pytest.raises(ValueError, match="no rivals"):
        rival_probabilities(trace_from_logprobs(logprobs))


def test_figures_and_view_render_from_a_real_trace(tiny, photo, tmp_path):
    trace = tiny.trace(photo, "describe the image .", max_new_tokens=5, rivals=["dog", "sheep"])
    for figure in (
        plot_token_probabilities(trace),
        plot_token_probabilities(trace, candidates="paper", from_layer=2),
        plot_rivals(trace),
    ):
        assert figure.axes and figure.axes[0].lines
        figure.savefig(tmp_path / "figure.png")
    page = topk_view(trace)
    assert page.count("CircuitsVis.render(") == 1 + len(set(np.linspace(0, 4, 5).astype(int)))
    assert "unpkg.com" not in page and "<script" in page
    assert re.search(r'"topKTokens":', page)
