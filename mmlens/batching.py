"""Several prompts (and images) in one forward: left padding, per-row positions and image masks.

Rows are padded on the left, as `transformers` pads for generation, so that every row's next
token is predicted at the last position. Each row's positions count from its first real token,
so a padded row computes what it computes alone (up to float rounding).
"""

import dataclasses
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs


def position_ids(attention_mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """Positions counted over each row's real tokens (padding gets 0), as HF generate does."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def cat_pixel_values(pixels: Sequence[Tensor]) -> Tensor:
    """The rows' pixel values as one tensor, when every image preprocessed to one size."""
    shapes = {tuple(p.shape[1:]) for p in pixels}
    if len(shapes) > 1:
        raise ConfigError(f"Images of one batch must preprocess to one size; got {sorted(shapes)}.")
    return torch.cat(list(pixels))


def batch_inputs(
    rows: Sequence[ModelInputs],
    pad_token_id: int,
    *,
    stack_pixels: Callable[[Sequence[Tensor]], Tensor] = cat_pixel_values,
    positions: Callable[[ModelInputs], Tensor | None] | None = None,
) -> ModelInputs:
    """One left-padded batch from single-row inputs (pixel values of the rows with images).

    `stack_pixels` joins the rows' pixel values and `positions` gives the batch's position ids
    (default: counted over each row's real tokens); families differ in both.
    """
    if not rows:
        raise ConfigError("An empty batch: pass at least one prompt.")
    if any(row.batch_size != 1 for row in rows):
        raise ConfigError("batch_inputs takes single-row inputs.")
    if len(rows) == 1:
        return rows[0]
    length = max(row.n_positions for row in rows)
    ids, mask, image = [], [], []
    per_token: dict[str, list[Tensor]] = {key: [] for row in rows for key in row.token_kwargs}
    for row in rows:
        pad = length - row.n_positions
        ids.append(torch.nn.functional.pad(row.input_ids, (pad, 0), value=pad_token_id))
        mask.append(torch.nn.functional.pad(row.attention_mask, (pad, 0), value=0))
        image.append(torch.nn.functional.pad(row.image_mask, (pad, 0), value=False))
        for key, values in per_token.items():
            row_values = row.token_kwargs.get(key, torch.zeros_like(row.input_ids))
            values.append(torch.nn.functional.pad(row_values, (pad, 0), value=0))
    with_image = [row for row in rows if row.pixel_values is not None]
    image_kwargs = {
        key: torch.cat([row.image_kwargs[key] for row in with_image])
        for key in (with_image[0].image_kwargs if with_image else ())
    }
    batch = ModelInputs(
        input_ids=torch.cat(ids),
        attention_mask=torch.cat(mask),
        pixel_values=stack_pixels([row.pixel_values for row in with_image]) if with_image else None,
        image_mask=torch.cat(image),
        text=rows[0].text,
        texts=tuple(row.text for row in rows),
        image_kwargs=image_kwargs,
        token_kwargs={key: torch.cat(values) for key, values in per_token.items()},
        patch_grids=tuple(row.patch_grid(0) for row in rows),
    )
    found = position_ids(batch.attention_mask) if positions is None else positions(batch)
    return dataclasses.replace(batch, position_ids=found)
