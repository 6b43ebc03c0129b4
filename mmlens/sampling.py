"""Choosing the next token: greedy, or sampled as `transformers` samples (temperature, then
top-k, then top-p filtering, then one multinomial draw per step), from the sampler's own seeded
generator or torch's global one."""

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.errors import ConfigError


def greedy(logits: Float[Tensor, "batch d_vocab"]) -> list[int]:
    """The most probable token of each row."""
    return logits.argmax(-1).tolist()


@dataclass
class Sampler:
    """Sample each row's next token. `seed` gives the sampler its own generator, so a run repeats
    exactly whatever else draws random numbers; with `seed=None` it draws from torch's global
    generator, as `transformers` and TransformerLens do, so `torch.manual_seed(n)` repeats it."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    generator: torch.Generator | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature}: use a value > 0 (or greedy).")
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise ConfigError(f"top_k={self.top_k!r}: use an integer >= 1 (or None).")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p}: use a value in (0, 1] (or None).")
        self.generator = None
        if self.seed is not None:
            self.generator = torch.Generator().manual_seed(self.seed)

    def filtered(self, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch d_vocab"]:
        """Scores after temperature, top-k and top-p, as `transformers`' logits warpers."""
        scores = logits.float() / self.temperature
        if self.top_k is not None:
            k = min(self.top_k, scores.shape[-1])
            kth = torch.topk(scores, k).values[..., -1, None]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= 1 - self.top_p
            remove[..., -1:] = False  # always keep the most probable token
            scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        return scores

    def __call__(self, logits: Float[Tensor, "batch d_vocab"]) -> list[int]:
        probs = self.filtered(logits).softmax(dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1).tolist()
