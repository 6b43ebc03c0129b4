"""Images and prompts -> model inputs, with the image positions carried as data."""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.images import ImageLike, load_image, to_rgb

__all__ = [
    "ImageLike",
    "ModelInputs",
    "grid_positions",
    "image_regions",
    "load_image",
    "square_grid",
    "to_rgb",
]


@dataclass(frozen=True)
class ModelInputs:
    """Everything one forward pass needs, plus where the image tokens sit in the sequence."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    # The processor's output for the rows with an image, in the family's layout: LLaVA
    # [n_image, channel, height, width], LLaVA-NeXT [n_image, n_tile, channel, height, width],
    # Qwen2.5-VL [n_patch, channel x temporal x patch x patch] (every image's patches in a row).
    pixel_values: Float[Tensor, "..."] | None
    image_mask: Bool[Tensor, "batch pos"]
    text: str  # the templated prompt of the first row
    texts: tuple[str, ...] = ()  # every row's templated prompt, for batches
    # Left-padded batches need positions that start at each row's first real token; families
    # with multimodal rotary positions (Qwen2.5-VL) give [stream, batch, pos] instead.
    position_ids: Int[Tensor, "batch pos"] | Int[Tensor, "stream batch pos"] | None = None
    # Per-image tensors the family's forward needs beside the pixels (one row per image):
    # LLaVA-NeXT's `image_sizes`, Qwen2.5-VL's `image_grid_thw`.
    image_kwargs: Mapping[str, Tensor] = field(default_factory=dict)
    # Per-token tensors [batch, pos] the family's prefill also takes (Gemma 3's `token_type_ids`,
    # which make image tokens attend to each other both ways); decoding steps do without them.
    token_kwargs: Mapping[str, Tensor] = field(default_factory=dict)
    # Per batch row, the (rows, columns) grid its image tokens form in raster order (after a
    # CLS token, if kept), or None where they form none (several images, tiles with newline
    # tokens); empty when unknown, and then a square count is taken for a grid.
    patch_grids: tuple[tuple[int, int] | None, ...] = ()

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def row_texts(self) -> tuple[str, ...]:
        return self.texts or (self.text,)

    @property
    def n_positions(self) -> int:
        return int(self.input_ids.shape[-1])

    @property
    def image_positions(self) -> Int[Tensor, " n_img"]:
        """Sequence positions of the image tokens (of the first batch row)."""
        return torch.nonzero(self.image_mask[0]).flatten()

    @property
    def text_positions(self) -> Int[Tensor, " n_text"]:
        """Sequence positions of every token that is not an image token."""
        return torch.nonzero(~self.image_mask[0]).flatten()

    @property
    def image_span(self) -> tuple[int, int] | None:
        """Half-open range [start, end) of the image tokens, or None for text-only input."""
        positions = self.image_positions
        if positions.numel() == 0:
            return None
        return int(positions[0]), int(positions[-1]) + 1

    def patch_grid(self, row: int = 0) -> tuple[int, int] | None:
        """(rows, columns) of batch row `row`'s image tokens as one patch grid, or None."""
        if self.patch_grids:
            return self.patch_grids[row]
        return square_grid(int(self.image_mask[row].sum()))

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the Hugging Face / bridge forward."""
        kwargs: dict[str, Any] = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
        }
        if self.pixel_values is not None:
            kwargs["pixel_values"] = self.pixel_values
            kwargs.update(self.image_kwargs)
            kwargs.update(self.token_kwargs)
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        return kwargs

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "ModelInputs":
        """Copy onto a device; pixel values also take the model's floating dtype."""
        pixels = self.pixel_values
        if pixels is not None:
            pixels = pixels.to(device=device, dtype=dtype or pixels.dtype)
        return ModelInputs(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            pixel_values=pixels,
            image_mask=self.image_mask.to(device),
            text=self.text,
            texts=self.texts,
            position_ids=None if self.position_ids is None else self.position_ids.to(device),
            image_kwargs={key: value.to(device) for key, value in self.image_kwargs.items()},
            token_kwargs={key: value.to(device) for key, value in self.token_kwargs.items()},
            patch_grids=self.patch_grids,
        )


def grid_positions(inputs: ModelInputs, row: int = 0) -> Int[Tensor, " n_patch"]:
    """Sequence positions of batch row `row`'s image patches in raster order over
    `inputs.patch_grid(row)` (a kept CLS token left out), or a clear error without a grid."""
    positions = torch.nonzero(inputs.image_mask[row]).flatten()
    grid = inputs.patch_grid(row)
    if grid is None:
        raise ConfigError(
            f"Row {row}'s {len(positions)} image positions are not one patch grid (several "
            "images, or tiles with newline tokens): this view needs one image's grid."
        )
    return positions[len(positions) - grid[0] * grid[1] :]


def image_regions(inputs: ModelInputs, per_side: int = 2, row: int = 0) -> dict[str, Tensor]:
    """Image positions of batch row `row` grouped into `per_side` x `per_side` regions of the
    patch grid, named "r,c" (region row, column)."""
    positions = grid_positions(inputs, row)
    height, width = inputs.patch_grid(row)
    if not 1 <= per_side <= min(height, width):
        raise ConfigError(
            f"per_side={per_side}: choose 1..{min(height, width)} regions per side "
            f"(the patch grid is {height} x {width})."
        )
    row_cuts = [round(i * height / per_side) for i in range(per_side + 1)]
    column_cuts = [round(i * width / per_side) for i in range(per_side + 1)]
    regions = {}
    for r in range(per_side):
        for c in range(per_side):
            grid = [
                y * width + x
                for y in range(row_cuts[r], row_cuts[r + 1])
                for x in range(column_cuts[c], column_cuts[c + 1])
            ]
            regions[f"{r},{c}"] = positions[grid]
    return regions


def square_grid(n_image: int) -> tuple[int, int] | None:
    """The square grid `n_image` tokens form (a CLS token first allowed), else None."""
    for count in (n_image, n_image - 1):
        side = math.isqrt(max(count, 0))
        if count > 0 and side * side == count:
            return side, side
    return None
