"""Activation patching with images (clean vs corrupted image, same prompt), layer by layer.

TransformerLens's conventions: the clean run's activation at hook `blocks.{b}.hook_{resid}` is
written into the corrupted run at the chosen positions, and a metric of the patched logits is
reported raw and normalised as (patched - corrupted) / (clean - corrupted), so 1 means the patch
restores the clean behaviour and 0 means it does nothing. Positions are grouped by the image mask:
image tokens, text tokens, or all.
"""

from collections.abc import Callable

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs
from mmlens.model import HookedLVLM

Metric = Callable[[Float[Tensor, "batch pos d_vocab"]], float]
GROUPS = ("image", "text", "all")
HOOKS = ("resid_pre", "resid_mid", "resid_post")


def logit_difference(model: HookedLVLM, good: str, bad: str) -> Metric:
    """Metric: last-position logit of single-token `good` minus that of `bad`."""
    good_id, bad_id = model.to_single_token(good), model.to_single_token(bad)

    def metric(logits: Tensor) -> float:
        return float(logits[0, -1, good_id] - logits[0, -1, bad_id])

    return metric


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
    if clean.input_ids.shape != corrupted.input_ids.shape or not torch.equal(
        clean.image_mask, corrupted.image_mask
    ):
        raise ConfigError("Clean and corrupted inputs need the same length and image positions.")
    names = [f"blocks.{b}.hook_{hook}" for b in range(model.n_blocks)]
    clean_logits, cache = model.run_with_cache(
        inputs=clean, names_filter=lambda name: name in names
    )
    clean_score, corrupted_score = metric(clean_logits), metric(model(inputs=corrupted))
    span = clean_score - corrupted_score
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
    rows = []
    for block, name in enumerate(names):
        for group, where in chosen.items():

            def patch(
                activation: Tensor, hook: object, name: str = name, where: Tensor = where
            ) -> Tensor:
                activation = activation.clone()
                activation[:, where] = cache[name][:, where].to(activation.dtype)
                return activation

            score = metric(model.run_with_hooks(inputs=corrupted, fwd_hooks=[(name, patch)]))
            rows.append(
                {
                    "block": block,
                    "hook": name,
                    "group": group,
                    "metric": score,
                    "normalized": (score - corrupted_score) / span if span else float("nan"),
                }
            )
    return pd.DataFrame(rows)
