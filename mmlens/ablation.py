"""Ablating image tokens: replace what the language model reads at some image positions.

The intervention edits the merged sequence entering block 0 (`blocks.0.hook_resid_pre`, layer 0)
at chosen image positions: with zeros, with the mean over the row's image positions, or with
another image's values at the same positions. Only a forward that holds those positions (the
prefill) is edited, so the same hooks serve a forward pass, `generate` and `trace` with the KV
cache. It changes a forward pass, so it lives with the model; `analyses.ablation` sweeps it.
"""

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs

ABLATIONS = ("zero", "mean", "patch")
HOOK = "blocks.0.hook_resid_pre"
Hook = tuple[str, Callable[[Tensor, object], Tensor]]


def image_ablation_hooks(
    inputs: ModelInputs,
    positions: Int[Tensor, " n"],
    mode: str = "zero",
    source: Float[Tensor, "pos d_model"] | None = None,
    row: int = 0,
) -> list[Hook]:
    """Forward hooks that ablate batch row `row`'s image `positions` (sequence positions, all
    image tokens of that row): "zero", "mean" (the row's mean image token) or "patch" (`source`,
    another run's `blocks.0.hook_resid_pre` of that row, at the same positions)."""
    if mode not in ABLATIONS:
        raise ConfigError(f"mode={mode!r}; choose one of {ABLATIONS}.")
    if not 0 <= row < inputs.batch_size:
        raise ConfigError(f"row={row}; these inputs have rows 0..{inputs.batch_size - 1}.")
    positions = torch.as_tensor(positions, dtype=torch.long).flatten()
    image = inputs.image_mask[row]
    if positions.numel() == 0:
        raise ConfigError("No positions to ablate; give at least one image position.")
    length = image.shape[0]
    if positions.min() < 0 or positions.max() >= length or not image[positions].all():
        raise ConfigError(
            f"positions {positions.tolist()[:8]}... are not all image positions of row {row} "
            f"(its image positions: {torch.nonzero(image).flatten().tolist()[:4]}...)."
        )
    if (mode == "patch") != (source is not None):
        raise ConfigError("mode='patch' needs source= (another run's resid_pre); others do not.")
    if source is not None and source.shape[0] != length:
        raise ConfigError(
            f"source has {source.shape[0]} positions, these inputs {length}: patch between "
            "inputs of one length (the same prompt, images with equal token counts)."
        )

    def ablate(resid: Tensor, hook: object) -> Tensor:
        if resid.shape[1] != length:  # a decoding step: the image is in the KV cache already
            return resid
        edited = resid.clone()
        where = positions.to(resid.device)
        if mode == "zero":
            edited[row, where] = 0
        elif mode == "mean":
            edited[row, where] = resid[row, image.to(resid.device)].mean(dim=0)
        else:
            assert source is not None
            edited[row, where] = source[where.cpu()].to(resid.device, resid.dtype)
        return edited

    return [(HOOK, ablate)]
