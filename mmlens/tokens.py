"""Tokens that carry their image, so TransformerLens code that passes tokens around works.

`HookedLVLM.to_tokens(prompt, image=...)` returns `ImageTokens`: an ordinary [batch, pos] tensor
of token ids that also holds the `ModelInputs` it came from (pixel values, image mask,
attention mask). Functions written for TransformerLens, such as `transformer_lens.patching`,
call `model.run_with_hooks(tokens, ...)` and `model.run_with_cache(tokens)`; given these tokens,
an mmlens model runs them with their image. Anything computed from them (a slice, `.to()`) is a
plain tensor again, because its image would no longer match.
"""

from typing import Any

import torch
from torch import Tensor

from mmlens.errors import PromptError
from mmlens.inputs import ModelInputs


class ImageTokens(Tensor):
    """Token ids [batch, pos] that remember their `ModelInputs` (see the module docstring)."""

    inputs: ModelInputs

    @staticmethod
    def wrap(inputs: ModelInputs) -> "ImageTokens":
        tokens = inputs.input_ids.as_subclass(ImageTokens)
        tokens.inputs = inputs
        return tokens

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = super().__torch_function__(func, types, args, kwargs or {})
        return _plain(result)


def _plain(value: Any) -> Any:
    """Results of operations on ImageTokens are plain tensors (their image may not fit them)."""
    if isinstance(value, ImageTokens):
        return value.as_subclass(Tensor)
    if isinstance(value, tuple) and not isinstance(value, torch.Size):
        items = [_plain(v) for v in value]
        return tuple(items) if type(value) is tuple else type(value)(items)  # torch.return_types
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def text_inputs(tokens: Tensor, attention_mask: Tensor | None = None) -> ModelInputs:
    """Inputs for plain token ids (text only), as TransformerLens runs them: unpadded, or
    padded where `attention_mask` (0/1, the ids' shape) is 0."""
    ids = tokens if tokens.dim() == 2 else tokens.unsqueeze(0)
    if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
        raise PromptError(
            f"Token ids must be an integer tensor [batch, pos] or [pos]; got {ids.dtype} with "
            f"shape {tuple(tokens.shape)}."
        )
    mask = torch.ones_like(ids, dtype=torch.long)
    if attention_mask is not None:
        given = attention_mask if attention_mask.dim() == 2 else attention_mask.unsqueeze(0)
        if given.shape != ids.shape or not bool(((given == 0) | (given == 1)).all()):
            raise PromptError(
                f"attention_mask must be 0s and 1s of the token ids' shape {tuple(ids.shape)}; "
                f"got shape {tuple(attention_mask.shape)}."
            )
        if not bool(given.any(dim=1).all()):
            raise PromptError("attention_mask has a row of zeros: every row needs a real token.")
        mask = given.to(device=ids.device, dtype=torch.long)
    return ModelInputs(
        input_ids=ids.long(),
        attention_mask=mask,
        pixel_values=None,
        image_mask=torch.zeros_like(ids, dtype=torch.bool),
        text="",
    )
