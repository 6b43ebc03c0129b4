"""An `ActivationCache` that remembers its inputs, so it can be sliced into image and text."""

from typing import Any

import torch
from torch import Tensor
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.utilities import Slice

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

    # -- residual decomposition with the image as its own component ------------------------------
    def _split_embed(
        self, stack: Tensor, labels: list[str], pos_slice: Any
    ) -> tuple[Tensor, list[str]]:
        """Replace TransformerLens's "embed" component (token embeddings before the image
        features are put in) by "embed" at text positions and "image" (the projector's features
        entering block 0) at image positions, so the components sum to the residual."""
        if "embed" not in labels:
            return stack, labels
        if "blocks.0.hook_resid_pre" not in self.cache_dict:
            raise ConfigError(
                "Decomposing the residual with an image needs blocks.0.hook_resid_pre in the "
                "cache; run run_with_cache without a names_filter that drops it."
            )
        merged = self["blocks.0.hook_resid_pre"]
        image = self.inputs.image_mask.to(merged.device)
        image = (image if self.has_batch_dim else image[0])[..., None].to(merged.dtype)
        where = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        text_part = where.apply(merged * (1 - image), dim=-2)
        image_part = where.apply(merged * image, dim=-2)
        index = labels.index("embed")
        parts = [stack[:index], text_part[None], image_part[None], stack[index + 1 :]]
        return torch.cat(parts), [*labels[:index], "embed", "image", *labels[index + 1 :]]

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: Any = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> Any:
        """TransformerLens's `decompose_resid`, with "embed" (text positions) and "image" (image
        positions) in place of its embedding component: the parts sum to the residual at every
        position."""
        stack, labels = super().decompose_resid(
            layer, mlp_input, mode, False, pos_slice, incl_embeds, return_labels=True
        )
        stack, labels = self._split_embed(stack, labels, pos_slice)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos_slice)
        return (stack, labels) if return_labels else stack

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: Any = None,
        return_labels: bool = False,
        project_output_onto: Tensor | None = None,
    ) -> Any:
        """TransformerLens's `get_full_resid_decomposition` (heads, neurons, embeddings, biases)
        with the image as its own component, as in `decompose_resid`."""
        stack, labels = super().get_full_resid_decomposition(
            layer, mlp_input, expand_neurons, False, pos_slice, return_labels=True
        )
        stack, labels = self._split_embed(stack, labels, pos_slice)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice=pos_slice)
        if project_output_onto is not None:
            stack = stack @ project_output_onto
        return (stack, labels) if return_labels else stack
