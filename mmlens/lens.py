"""The logit lens: per-layer next-token distributions and the statistics mmlens records.

Layers are numbered like Hugging Face `hidden_states`: 0 is the embedding output and l is the
output of block l-1. Distributions are computed in float32 and divergences in float64, whatever
dtype the model runs in.
"""

import math
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

Lens = Literal["normed", "paper"]
LENSES: tuple[str, ...] = ("normed", "paper")
LN2 = math.log(2.0)


def hf_hidden_states(
    resid: Float[Tensor, "*batch layer d_model"], final_norm: nn.Module
) -> Float[Tensor, "*batch layer d_model"]:
    """The residuals as Hugging Face's `hidden_states` gives them: the last one final-normed."""
    last = final_norm(resid[..., -1:, :]).to(resid.dtype)
    return torch.cat([resid[..., :-1, :], last], dim=-2)


def lens_logits(
    resid: Float[Tensor, "*batch layer d_model"],
    final_norm: nn.Module,
    unembed: nn.Module,
    lens: Lens = "normed",
) -> Float[Tensor, "*batch layer d_vocab"]:
    """Unembed each layer's residual vector.

    `"normed"` applies the final norm to every layer first (the correct logit lens).
    `"paper"` reproduces the paper's code: the unembedding alone, except on the last row, which
    Hugging Face's `hidden_states[-1]` already returns final-normed.
    """
    if lens == "normed":
        return unembed(final_norm(resid))
    if lens == "paper":
        return unembed(hf_hidden_states(resid, final_norm))
    raise ValueError(f"Unknown lens {lens!r}; choose one of {LENSES}.")


def log_probs(logits: Float[Tensor, "*batch d_vocab"]) -> Float[Tensor, "*batch d_vocab"]:
    """Log-softmax in float32 (or better) regardless of the input dtype."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype), dim=-1)


def entropy(logprobs: Float[Tensor, "*batch d_vocab"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy in nats of distributions given as log-probabilities."""
    return -(logprobs.exp() * logprobs).sum(dim=-1)


def _mixture_terms(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """P, Q, M = (P + Q) / 2 and log(P / M), log(Q / M), from float64 log-probabilities.

    M is summed in linear space (float64 loses only terms below e^-745); the differences keep
    the log-probabilities themselves, so a token one layer rules out gives -inf, not NaN.
    """
    p, q = logp.exp(), logq.exp()
    mixture = 0.5 * (p + q)
    log_mixture = mixture.log()
    same = logp == logq  # exactly 0 there: identical distributions have divergence 0, not 1e-17
    log_pm = torch.where(same, 0.0, logp - log_mixture)
    log_qm = torch.where(same, 0.0, logq - log_mixture)
    return p, q, mixture, log_pm, log_qm


def _jsd(p: Tensor, q: Tensor, log_pm: Tensor, log_qm: Tensor) -> Tensor:
    terms = torch.where(p > 0, p * log_pm, 0.0) + torch.where(q > 0, q * log_qm, 0.0)
    return (0.5 * terms.sum(dim=-1)).clamp(0.0, LN2)


def _paper(mixture: Tensor, log_pm: Tensor, log_qm: Tensor) -> Tensor:
    # (KL(M||P) + KL(M||Q)) / 2 = -sum(M * (log P/M + log Q/M)) / 2, then / vocabulary size
    return -0.5 * torch.where(mixture > 0, mixture * (log_pm + log_qm), 0.0).mean(dim=-1)


def jensen_shannon(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, "*batch"]:
    """Jensen-Shannon divergence in nats (bounded by ln 2), computed in float64."""
    p, q, _, log_pm, log_qm = _mixture_terms(logp.double(), logq.double())
    return _jsd(p, q, log_pm, log_qm)


def paper_divergence(
    logp: Float[Tensor, "*batch d_vocab"], logq: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, "*batch"]:
    """What the paper's code reports as JSD: (KL(M||P) + KL(M||Q)) / 2, averaged over vocabulary.

    Their `kl_div(log_softmax(layer), M)` is KL(M||layer), the reverse of the JSD's KL(layer||M),
    and `.mean(-1)` divides the sum by the vocabulary size. Float64 like theirs; unlike the JSD it
    is unbounded (infinite where one distribution is exactly 0 and the other is not).
    """
    _, _, mixture, log_pm, log_qm = _mixture_terms(logp.double(), logq.double())
    return _paper(mixture, log_pm, log_qm)


def adjacent_jsd(logprobs: Float[Tensor, "*batch layer d_vocab"]) -> Float[Tensor, "*batch layer"]:
    """JSD between each layer and the next; the last entry is NaN (there is no next layer)."""
    return _pad_nan(jensen_shannon(logprobs[..., :-1, :], logprobs[..., 1:, :]))


def adjacent_divergences(
    logprobs: Float[Tensor, "*batch layer d_vocab"],
) -> tuple[Float[Tensor, "*batch layer"], Float[Tensor, "*batch layer"]]:
    """`adjacent_jsd` and the paper's divergence between the same layers, in one float64 pass."""
    logprobs = logprobs.double()
    p, q, mixture, log_pm, log_qm = _mixture_terms(logprobs[..., :-1, :], logprobs[..., 1:, :])
    return _pad_nan(_jsd(p, q, log_pm, log_qm)), _pad_nan(_paper(mixture, log_pm, log_qm))


def final_jsd(logprobs: Float[Tensor, "*batch layer d_vocab"]) -> Float[Tensor, "*batch layer"]:
    """JSD between each layer and the last (0 for the last): DoLa's (Chuang et al., 2024)
    contrast between a premature layer and the mature one."""
    return jensen_shannon(logprobs, logprobs[..., -1:, :].expand_as(logprobs))


def candidate_probs(
    logprobs: Float[Tensor, "*batch layer d_vocab"], k: int = 20, mass: float = 0.9
) -> Float[Tensor, "*batch layer"]:
    """Each layer's highest probability among the last layer's candidate tokens: its top `k`,
    cut after the token where their probability first adds up to `mass` (DeCo, Wang et al.,
    2025: an earlier layer may rate a visible object higher than the last layer does)."""
    top = logprobs[..., -1, :].exp().topk(min(k, logprobs.shape[-1]), dim=-1)
    keep = (top.values.cumsum(-1) - top.values) < mass  # [*batch, k]
    index = top.indices.unsqueeze(-2).expand(*logprobs.shape[:-1], top.indices.shape[-1])
    probs = logprobs.gather(-1, index).exp()  # [*batch, layer, k]
    return probs.masked_fill(~keep.unsqueeze(-2), -math.inf).amax(dim=-1)


def _pad_nan(values: Tensor) -> Tensor:
    return torch.cat([values, values.new_full((*values.shape[:-1], 1), math.nan)], dim=-1)
