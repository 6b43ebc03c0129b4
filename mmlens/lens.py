"""The logit lens: per-layer next-token distributions and the statistics mmlens records.

Layers are numbered like Hugging Face `hidden_states`: 0 is the embedding output and l is the
output of block l-1. Distributions are computed in float32 and divergences in float64, whatever
dtype the model runs in.
"""

import math
from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

Lens = Literal["normed", "paper"]
LENSES: tuple[str, ...] = ("normed", "paper")
LN2 = math.log(2.0)
Divergence = Callable[[Tensor, Tensor], Tensor]


def lens_logits(
    resid: Float[Tensor, "layer d_model"],
    final_norm: nn.Module,
    unembed: nn.Module,
    lens: Lens = "normed",
) -> Float[Tensor, "layer d_vocab"]:
    """Unembed each layer's residual vector.

    `"normed"` applies the final norm to every layer first (the correct logit lens).
    `"paper"` reproduces the paper's code: the unembedding alone, except on the last row, which
    Hugging Face's `hidden_states[-1]` already returns final-normed.
    """
    if lens == "normed":
        return unembed(final_norm(resid))
    if lens == "paper":
        normed_last = final_norm(resid[-1:])
        return unembed(torch.cat([resid[:-1], normed_last.to(resid.dtype)], dim=0))
    raise ValueError(f"Unknown lens {lens!r}; choose one of {LENSES}.")


def log_probs(logits: Float[Tensor, "*batch d_vocab"]) -> Float[Tensor, "*batch d_vocab"]:
    """Log-softmax in float32 (or better) regardless of the input dtype."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype), dim=-1)


def entropy(logprobs: Float[Tensor, "*batch d_vocab"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy in nats of distributions given as log-probabilities."""
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def jensen_shannon(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, "*batch"]:
    """Jensen-Shannon divergence in nats (bounded by ln 2), computed in float64.

    The mixture M = (P + Q) / 2 is formed in log space, so tiny probabilities neither
    underflow nor produce NaN.
    """
    logp, logq = logp.double(), logq.double()
    logm = torch.logaddexp(logp, logq) - LN2
    kl_pm = torch.where(logp > -math.inf, logp.exp() * (logp - logm), 0.0).sum(dim=-1)
    kl_qm = torch.where(logq > -math.inf, logq.exp() * (logq - logm), 0.0).sum(dim=-1)
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, LN2)


def paper_divergence(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, "*batch"]:
    """What the paper's code reports as JSD: (KL(M||P) + KL(M||Q)) / 2, averaged over vocabulary.

    Their `kl_div(log_softmax(layer), M)` is KL(M||layer), the reverse of the JSD's KL(layer||M),
    and `.mean(-1)` divides the sum by the vocabulary size. Float64 like theirs; unlike the JSD it
    is unbounded (infinite where one distribution is exactly 0 and the other is not).
    """
    logp, logq = logp.double(), logq.double()
    logm = torch.logaddexp(logp, logq) - LN2
    terms = torch.where(logm > -math.inf, logm.exp() * (logm - 0.5 * (logp + logq)), 0.0)
    return terms.mean(dim=-1)


def adjacent_jsd(
    logprobs: Float[Tensor, "layer d_vocab"], divergence: Divergence = jensen_shannon
) -> Float[Tensor, " layer"]:
    """JSD (or `divergence`) between each layer and the next; the last entry is NaN."""
    values = divergence(logprobs[:-1], logprobs[1:])
    return torch.cat([values, values.new_full((1,), math.nan)])
