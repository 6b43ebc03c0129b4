"""Activation patching with images (clean vs corrupted image, same prompt), layer by layer.

TransformerLens's conventions: the clean run's activation at hook `blocks.{b}.hook_{resid}` is
written into the corrupted run at the chosen positions, and a metric of the patched logits is
reported raw and normalised as (patched - corrupted) / (clean - corrupted), so 1 means the patch
restores the clean behaviour and 0 means it does nothing. `residual_patching` groups positions by
the image mask (image tokens, text tokens, all, or named positions), `head_patching` patches one
attention head at a time, `region_patching` one region of the image's patch grid at a time.
TransformerLens's own `transformer_lens.patching` functions also run on an mmlens model, given
tokens from `model.to_tokens(prompt, image=...)`.
"""

from collections.abc import Callable

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs, image_regions
from mmlens.model import HookedLVLM

Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], float]
GROUPS = ("image", "text", "all")
HOOKS = ("resid_pre", "resid_mid", "resid_post")


def logit_difference(
    model: HookedLVLM, good: str, bad: str, position: int = -1, row: int = 0
) -> Metric:
    """Metric: the logit of single-token `good` minus that of `bad`, at `position` of batch row
    `row` (default: the last position of the first row)."""
    good_id, bad_id = model.to_single_token(good), model.to_single_token(bad)

    def metric(logits: Tensor) -> float:
        return float(logits[row, position, good_id] - logits[row, position, bad_id])

    return metric


def _check_pair(clean: ModelInputs, corrupted: ModelInputs) -> None:
    if clean.input_ids.shape != corrupted.input_ids.shape or not torch.equal(
        clean.image_mask, corrupted.image_mask
    ):
        raise ConfigError("Clean and corrupted inputs need the same length and image positions.")


def _sweep(
    model: HookedLVLM,
    clean: ModelInputs,
    corrupted: ModelInputs,
    metric: Metric,
    patches: list[tuple[dict, str, Callable[[Tensor, Tensor], Tensor]]],
) -> pd.DataFrame:
    """Run each patch (row labels, hook name, setter(corrupted activation, clean activation))
    and report the metric raw and normalised."""
    names = sorted({name for _, name, _ in patches})
    clean_logits, cache = model.run_with_cache(inputs=clean, names_filter=lambda n: n in names)
    clean_score, corrupted_score = metric(clean_logits), metric(model(inputs=corrupted))
    span = clean_score - corrupted_score
    rows = []
    for labels, name, setter in patches:

        def patch(activation: Tensor, hook: object, name: str = name, setter=setter) -> Tensor:
            return setter(activation.clone(), cache[name].to(activation.dtype))

        score = metric(model.run_with_hooks(inputs=corrupted, fwd_hooks=[(name, patch)]))
        normalized = (score - corrupted_score) / span if span else float("nan")
        rows.append({**labels, "hook": name, "metric": score, "normalized": normalized})
    return pd.DataFrame(rows)


def _position_patches(
    model: HookedLVLM, hook: str, named: dict[str, Tensor], column: str
) -> list[tuple[dict, str, Callable[[Tensor, Tensor], Tensor]]]:
    """For every block, one patch per named set of positions of residual `hook`."""
    patches = []
    for block in range(model.n_blocks):
        for label, where in named.items():

            def setter(act: Tensor, source: Tensor, where: Tensor = where) -> Tensor:
                act[:, where] = source[:, where]
                return act

            patches.append(({"block": block, column: label}, f"blocks.{block}.hook_{hook}", setter))
    return patches


def head_patching(
    model: HookedLVLM,
    clean: ModelInputs,
    corrupted: ModelInputs,
    metric: Metric,
    *,
    blocks: list[int] | None = None,
) -> pd.DataFrame:
    """Patch each attention head's output (`blocks.{b}.attn.hook_z`, every position) from the
    clean run into the corrupted one. One row per (block, head)."""
    _check_pair(clean, corrupted)
    n_heads = int(model.cfg.n_heads)
    patches = []
    for block in blocks if blocks is not None else range(model.n_blocks):
        if not 0 <= block < model.n_blocks:
            raise ConfigError(f"block {block}: the model has blocks 0..{model.n_blocks - 1}.")
        for head in range(n_heads):

            def setter(act: Tensor, source: Tensor, head: int = head) -> Tensor:
                act[:, :, head] = source[:, :, head]
                return act

            patches.append(({"block": block, "head": head}, f"blocks.{block}.attn.hook_z", setter))
    return _sweep(model, clean, corrupted, metric, patches)


def region_patching(
    model: HookedLVLM,
    clean: ModelInputs,
    corrupted: ModelInputs,
    metric: Metric,
    *,
    per_side: int = 2,
    hook: str = "resid_pre",
) -> pd.DataFrame:
    """Patch the clean run's residual (`hook` of each block) into the corrupted one at one image
    region at a time (`image_regions`). One row per (block, region)."""
    _check_pair(clean, corrupted)
    if hook not in HOOKS:
        raise ConfigError(f"hook={hook!r}; choose one of {HOOKS}")
    patches = _position_patches(model, hook, image_regions(clean, per_side), "region")
    return _sweep(model, clean, corrupted, metric, patches)


def _positions(inputs: ModelInputs, group: str) -> Tensor:
    if group == "image":
        return inputs.image_positions
    if group == "text":
        return inputs.text_positions
    return torch.arange(inputs.n_positions, device=inputs.input_ids.device)


def residual_patching(
    model: HookedLVLM,
    clean: ModelInputs,
    corrupted: ModelInputs,
    metric: Metric,
    *,
    hook: str = "resid_pre",
    groups: tuple[str, ...] = GROUPS,
    positions: dict[str, list[int]] | None = None,
) -> pd.DataFrame:
    """Patch the clean residual into the corrupted run per block and position group: "image",
    "text", "all", and any named `positions` (sequence indices, e.g. {"answer": [-1]}).

    Returns block, hook name, group, metric and normalised metric (one row per block x group).
    """
    if hook not in HOOKS:
        raise ConfigError(f"hook={hook!r}; choose one of {HOOKS}")
    _check_pair(clean, corrupted)
    chosen = {group: _positions(clean, group) for group in groups}
    for group, indices in (positions or {}).items():
        where = torch.as_tensor(indices, dtype=torch.long, device=clean.input_ids.device)
        if (
            where.numel() == 0
            or not (-clean.n_positions <= where).all()
            or not (where < clean.n_positions).all()
        ):
            raise ConfigError(
                f"positions[{group!r}]={indices}: give indices within 0..{clean.n_positions - 1}."
            )
        chosen[group] = where % clean.n_positions
    patches = _position_patches(model, hook, chosen, "group")
    return _sweep(model, clean, corrupted, metric, patches)
