"""Where each forward's positions sit in the whole sequence, for hooks that need it.

A forward pre-hook on the language model counts: a forward without a filled KV cache starts the
sequence (its queries are positions 0..length-1); each later one continues it. Attention hooks
then map a step's queries (the last `n` positions so far) and keys (the last `k`: all of them,
or a sliding window's shorter cache) back to sequence positions.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from mmlens.errors import ConfigError


@dataclass
class SequenceStep:
    """Counts positions for inputs of `batch` rows x `n_prompt` positions (see module doc)."""

    n_prompt: int
    batch: int
    what: str  # names the hook's user in the error for other inputs
    end: int = 0  # one past the last position of the current forward

    def enter(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The language model's forward pre-hook (`register_forward_pre_hook(with_kwargs=True)`)."""
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise ConfigError(f"{self.what}: the language model got no inputs_embeds.")
        batch, length = int(embeds.shape[0]), int(embeds.shape[1])
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers >= 5.24: cache
        fresh = cache is None or int(cache.get_seq_length()) == 0
        if fresh and (length != self.n_prompt or batch != self.batch):
            raise ConfigError(
                f"This {self.what} was built for inputs of {self.batch} x {self.n_prompt} "
                f"positions; the model now runs {batch} x {length}. Build it from the inputs you "
                "run."
            )
        self.end = length if fresh else self.end + length

    def positions(self, n: int, device: torch.device | str = "cpu") -> Int[Tensor, " n"]:
        """Sequence positions of the last `n` positions so far (queries, or cached keys)."""
        return torch.arange(self.end - n, self.end, device=device)
