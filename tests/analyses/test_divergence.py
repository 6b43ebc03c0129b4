"""JSD analysis against scipy, the paper's formula and sklearn's MaxAbsScaler."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from _support import paper_code_divergence, staged_logprobs, trace_from_logprobs
from scipy.spatial.distance import jensenshannon as scipy_js

from mmlens.analyses.divergence import (
    jsd_between,
    jsd_matrix,
    mean_jsd_profile,
    plot_jsd_heatmap,
)
from mmlens.errors import TraceFormatError
from mmlens.lens import paper_divergence


def _logprobs(seed: int, scale: float, shape=(5, 300)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator) * scale).log_softmax(-1)


@pytest.mark.parametrize("scale", [1.0, 50.0])  # 50: near-degenerate distributions
def test_true_jsd_in_nats_and_bits_equals_scipy(scale):
    p, q = _logprobs(0, scale), _logprobs(1, scale)
    pairs = list(zip(p.exp().double().numpy(), q.exp().double().numpy(), strict=True))
    nats = [scipy_js(a, b) ** 2 for a, b in pairs]
    bits = [scipy_js(a, b, base=2) ** 2 for a, b in pairs]
    np.testing.assert_allclose(jsd_between(p, q).numpy(), nats, atol=1e-8)
    np.testing.assert_allclose(jsd_between(p, q, unit="bits").numpy(), bits, atol=1e-8)
    assert torch.all(jsd_between(p, q, unit="bits") <= 1 + 1e-12)


def test_symmetric_zero_on_equal_and_bounded():
    p, q = _logprobs(2, 5.0), _logprobs(3, 5.0)
    torch.testing.assert_close(jsd_between(p, q), jsd_between(q, p))
    assert torch.all(jsd_between(p, p) == 0)
    assert torch.all(jsd_between(p, q) <= math.log(2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    p, q = _logprobs(4, 20.0).to(dtype), _logprobs(5, 20.0).to(dtype)
    result = jsd_between(p, q)
    assert result.dtype == torch.float64 and not torch.isnan(result).any()
    torch.testing.assert_close(result, jsd_between(p.double(), q.double()))


def test_paper_divergence_is_their_reverse_kl_formula_not_jsd():
    p, q = (_logprobs(seed, 2.0).double().log_softmax(-1) for seed in (6, 7))
    paper = paper_divergence(p, q)
    np.testing.assert_allclose(paper.numpy(), paper_code_divergence(p, q), rtol=1e-12)
    # KL(M||P) is not KL(P||M): their number is not the JSD over the vocabulary size ...
    jsd_over_vocab = jsd_between(p, q) / p.shape[-1]
    assert not torch.allclose(paper, jsd_over_vocab, rtol=1e-3)
    # ... and is unbounded: a token one layer rules out entirely makes it infinite.
    p_zero = p.clone()
    p_zero[0, 0] = -math.inf
    assert torch.isinf(paper_divergence(p_zero, q)[0]) and jsd_between(p_zero, q)[0] < math.log(2)


def test_matrix_true_and_paper_modes():
    logprobs = staged_logprobs(n_steps=5, n_layers=9, critical=4)
    trace = trace_from_logprobs(logprobs)
    true = jsd_matrix(trace)
    assert true.shape == (5, 8) and list(true.columns[:2]) == ["0-1", "1-2"]
    np.testing.assert_allclose(true.to_numpy(), trace.jsd[:, :-1])
    np.testing.assert_allclose(jsd_matrix(trace, unit="bits").to_numpy(), true / math.log(2))
    paper = jsd_matrix(trace, mode="paper").to_numpy()
    reference = trace.paper_jsd[:, :-1]
    np.testing.assert_allclose(paper, reference / np.abs(reference).max(axis=0), rtol=1e-12)
    assert np.allclose(np.abs(paper).max(axis=0), 1)
    with pytest.raises(TraceFormatError, match="paper_jsd"):
        jsd_matrix(dataclasses.replace(trace, paper_jsd=None), mode="paper")
    assert jsd_matrix(trace, n_tokens=2).shape == (2, 8)
    assert mean_jsd_profile(trace).shape == (8,)
    with pytest.raises(ValueError, match="unit"):
        jsd_matrix(trace, unit="hartleys")


def test_heatmap_renders_from_a_real_trace(tiny, photo, tmp_path):
    trace = tiny.trace(photo, "describe the image .", max_new_tokens=4, lens="paper")
    for mode in ("true", "paper"):
        figure = plot_jsd_heatmap(trace, mode=mode)
        assert figure.axes[0].images
        figure.savefig(tmp_path / f"{mode}.png")
