"""Several prompts (and images) in one forward: left padding, per-row positions and image masks.

Rows are padded on the left, as `transformers` pads for generation, so that every row's next
token is predicted at the last position. Each row's positions count from its first real token,
so a padded row computes what it computes alone (up to float rounding).
"""

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs


def position_ids(attention_mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """Positions counted over each row's real tokens (padding gets 0), as HF generate does."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def batch_inputs(rows: Sequence[ModelInputs], pad_token_id: int) -> ModelInputs:
    """One left-padded batch from single-row inputs (pixel values of the rows with images)."""
    if not rows:
        raise ConfigError("An empty batch: pass at least one prompt.")
    if any(row.batch_size != 1 for row in rows):
        raise ConfigError("batch_inputs takes single-row inputs.")
    if len(rows) == 1:
        return rows[0]
    length = max(row.n_positions for row in rows)
    ids, mask, image = [], [], []
    for row in rows:
        pad = length - row.n_positions
        ids.append(torch.nn.functional.pad(row.input_ids, (pad, 0), value=pad_token_id))
        mask.append(torch.nn.functional.pad(row.attention_mask, (pad, 0), value=0))
        image.append(torch.nn.functional.pad(row.image_mask, (pad, 0), value=False))
    pixels = [row.pixel_values for row in rows if row.pixel_values is not None]
    shapes = {tuple(p.shape[1:]) for p in pixels}
    if len(shapes) > 1:
        raise ConfigError(f"Images of one batch must preprocess to one size; got {sorted(shapes)}.")
    attention_mask = torch.cat(mask)
    return ModelInputs(
        input_ids=torch.cat(ids),
        attention_mask=attention_mask,
        pixel_values=torch.cat(pixels) if pixels else None,
        image_mask=torch.cat(image),
        text=rows[0].text,
        texts=tuple(row.text for row in rows),
        position_ids=position_ids(attention_mask),
    )
