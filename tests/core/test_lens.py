"""Lens maths against independent references (scipy) and its invariants."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon as scipy_js

from mmlens.lens import (
    adjacent_divergences,
    adjacent_jsd,
    candidate_probs,
    entropy,
    final_jsd,
    jensen_shannon,
    log_probs,
    paper_divergence,
)


def _random_logits(seed: int, shape=(6, 500), scale=3.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])  # 40: near-degenerate, one-hot-like
def test_jsd_equals_scipy(scale):
    p, q = log_probs(_random_logits(0, scale=scale)), log_probs(_random_logits(1, scale=scale))
    expected = [
        scipy_js(a, b) ** 2
        for a, b in zip(p.exp().double().numpy(), q.exp().double().numpy(), strict=True)
    ]
    np.testing.assert_allclose(jensen_shannon(p, q).numpy(), expected, atol=1e-7)


def test_jsd_invariants():
    p, q = log_probs(_random_logits(2)), log_probs(_random_logits(3))
    torch.testing.assert_close(jensen_shannon(p, q), jensen_shannon(q, p))
    assert torch.all(jensen_shannon(p, p) == 0)
    disjoint_p = torch.tensor([0.0, -math.inf]).log_softmax(-1)
    disjoint_q = torch.tensor([-math.inf, 0.0]).log_softmax(-1)
    assert jensen_shannon(disjoint_p, disjoint_q).item() == pytest.approx(math.log(2), abs=1e-12)
    assert torch.all(jensen_shannon(p, q) <= math.log(2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_promoted(dtype):
    logits = _random_logits(4, scale=30.0).to(dtype)
    logp = log_probs(logits)
    assert logp.dtype == torch.float32
    jsd = adjacent_jsd(logp)
    assert not torch.isnan(jsd[:-1]).any() and torch.isnan(jsd[-1])
    reference = adjacent_jsd(log_probs(logits.double()))
    torch.testing.assert_close(jsd[:-1], reference[:-1], atol=1e-6, rtol=1e-4)


def test_adjacent_divergences_in_one_pass_equal_the_pairwise_functions():
    logp = log_probs(_random_logits(5, scale=40.0))
    logp[2, :7] = -math.inf  # tokens one layer rules out
    jsd, paper = adjacent_divergences(logp)
    torch.testing.assert_close(jsd, adjacent_jsd(logp), equal_nan=True, rtol=0, atol=1e-15)
    expected_paper = paper_divergence(logp[:-1], logp[1:])
    torch.testing.assert_close(paper[:-1], expected_paper, rtol=1e-14, atol=0)
    assert torch.isnan(paper[-1]) and torch.isinf(paper[1:3]).all() and paper[3:-1].isfinite().all()


def test_entropy_of_uniform_is_log_n():
    uniform = torch.zeros(3, 50).log_softmax(-1)
    torch.testing.assert_close(entropy(uniform), torch.full((3,), math.log(50)))


def test_final_jsd_equals_scipy_against_the_last_layer():
    logprobs = torch.log_softmax(torch.randn(6, 50, generator=torch.Generator().manual_seed(2)), -1)
    found = final_jsd(logprobs).numpy()
    probs = logprobs.double().exp().numpy()
    expected = [scipy_js(layer, probs[-1]) ** 2 for layer in probs]  # scipy: sqrt, nats
    np.testing.assert_allclose(found, expected, atol=1e-7)
    assert found[-1] == 0


def test_candidate_probs_follow_deco_with_plain_numpy():
    """The last layer's top tokens, cut after the one where their mass first reaches 0.9; each
    layer's best probability among them."""
    last = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    other = np.log(np.array([0.1, 0.2, 0.3, 0.4]))  # its best token (3) is no candidate
    logprobs = torch.tensor(np.stack([other, last]))
    found = candidate_probs(logprobs, k=20, mass=0.9).numpy()
    # candidates: 0.5, 0.3 (0.8 < 0.9), 0.15 (crosses 0.9): tokens 0, 1, 2
    np.testing.assert_allclose(found, [0.3, 0.5])
    np.testing.assert_allclose(candidate_probs(logprobs, k=2).numpy(), [0.2, 0.5])
