"""An `ActivationCache` that remembers its inputs, so it can be sliced into image and text."""

from typing import Any

from jaxtyping import Float
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache

from mmlens.inputs import ModelInputs


class LVLMActivationCache(ActivationCache):
    """TransformerLens's cache plus the `ModelInputs` (and so the image mask) it was run on."""

    def __init__(self, cache_dict: dict[str, Tensor], model: Any, inputs: ModelInputs) -> None:
        super().__init__(cache_dict, model, has_batch_dim=True)
        self.inputs = inputs

    def image_part(self, name: str) -> Float[Tensor, "batch n_img *rest"]:
        """Activation `name` at the image-token positions (shape [batch, n_img, ...])."""
        return self[name][:, self.inputs.image_positions.to(self[name].device)]

    def text_part(self, name: str) -> Float[Tensor, "batch n_text *rest"]:
        """Activation `name` at every non-image position (shape [batch, n_text, ...])."""
        return self[name][:, self.inputs.text_positions.to(self[name].device)]
