"""An `ActivationCache` that remembers its inputs, so it can be sliced into image and text."""

from typing import Any

import torch
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs


class LVLMActivationCache(ActivationCache):
    """TransformerLens's cache plus the `ModelInputs` (and so the image mask) it was run on.

    `image_part` / `text_part` select each row's own positions (left-padded batches place them
    differently per row; padding is never text). With `remove_batch_dim=True` (one row) the
    tensors have no batch axis and neither do the parts.
    """

    def __init__(
        self,
        cache_dict: dict[str, Tensor],
        model: Any,
        inputs: ModelInputs,
        has_batch_dim: bool = True,
    ) -> None:
        super().__init__(cache_dict, model, has_batch_dim=has_batch_dim)
        self.inputs = inputs

    def _part(self, name: str, mask: Tensor, row: int | None, what: str) -> Tensor:
        values = self[name]
        if not self.has_batch_dim:
            return values[torch.nonzero(mask[0]).flatten().to(values.device)]
        if row is not None:
            if not -len(mask) <= row < len(mask):
                raise ConfigError(f"row={row}: the cache has rows 0..{len(mask) - 1}.")
            return values[row, torch.nonzero(mask[row]).flatten().to(values.device)]
        counts = mask.sum(dim=1)
        if not (counts == counts[0]).all():
            raise ConfigError(
                f"The rows have different numbers of {what} positions ({counts.tolist()}); "
                "pass row=... to take one row's."
            )
        index = torch.stack([torch.nonzero(m).flatten() for m in mask]).to(values.device)
        gather = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(
            *index.shape, *values.shape[2:]
        )
        return values.gather(1, gather)

    def image_part(self, name: str, row: int | None = None) -> Tensor:
        """Activation `name` at the image positions: [batch, n_img, ...] (every row its own
        positions), [n_img, ...] for one `row` or a cache without a batch axis."""
        return self._part(name, self.inputs.image_mask, row, "image")

    def text_part(self, name: str, row: int | None = None) -> Tensor:
        """Activation `name` at the text positions (not image, not padding), laid out as
        `image_part`; rows of different lengths need `row`."""
        text = ~self.inputs.image_mask & self.inputs.attention_mask.bool()
        return self._part(name, text, row, "text")
