"""Attention knockout: stop information flowing from some positions to others in chosen layers.

An edge "image->last" (source -> target) blocks the target positions (queries) from attending to
the source positions (keys), as in the information-flow papers' "image -> last" knockouts.

The edit is made where every family's attention reads it: the 4-D additive attention mask each
decoder layer hands its attention module (a forward pre-hook on that module). A blocked edge gets
the dtype's minimum, as a causal mask does, so the softmax gives it no weight; other edges and the
model's own masking (causal, padding, sliding windows, Gemma 3's two-way image attention) stay as
they were. It changes a forward pass, so it lives with the model; `analyses.flow` sweeps it.

Positions are those of the (left-padded) sequence `inputs` describes; generated tokens continue
it (the first generated token sits at `inputs.n_positions`). Knockouts hold in a forward pass,
`generate` and `trace` alike: `steps.SequenceStep` maps each step's queries and keys (a KV
cache, a sliding window's shorter cache) back to sequence positions.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from mmlens.errors import ConfigError, LayerIndexError
from mmlens.fast_path import needs_bridge
from mmlens.inputs import ModelInputs, image_regions
from mmlens.steps import SequenceStep

#: Group names: every image token, the prompt's text tokens before the last one, the last prompt
#: position (the one that predicts the first answer token), every generated token; a region of
#: the patch grid is "region:R,C/N" (row R, column C of an N x N split, as `image_regions`).
GROUPS = ("image", "prompt", "last", "generated")
Group = str | Sequence[int] | Tensor


@dataclass(frozen=True)
class _Positions:
    """One group in one batch row: fixed positions, and whether generated positions belong."""

    fixed: Int[Tensor, " n"]
    generated: bool = False

    def member(self, positions: Int[Tensor, " n"], n_prompt: int) -> Bool[Tensor, " n"]:
        inside = torch.isin(positions, self.fixed.to(positions.device))
        return inside | (positions >= n_prompt) if self.generated else inside


def parse_edge(edge: str | tuple[Group, Group]) -> tuple[Group, Group]:
    """(source, target): ("image", "last") as it is, or "image->last" (or "image→last") split."""
    if isinstance(edge, str):
        parts = edge.replace("→", "->").split("->")
        if len(parts) != 2 or not all(part.strip() for part in parts):
            raise ConfigError(f"edge {edge!r}: write SOURCE->TARGET, e.g. 'image->last'.")
        return parts[0].strip(), parts[1].strip()
    if len(edge) != 2:
        raise ConfigError(f"edge {edge!r}: give (source, target), e.g. ('image', 'last').")
    return edge[0], edge[1]


def group_positions(inputs: ModelInputs, group: Group, row: int = 0) -> _Positions:
    """Where `group` sits in batch row `row` (see `GROUPS`; or explicit sequence positions)."""
    n_prompt = inputs.n_positions
    real = inputs.attention_mask[row].bool()
    image = inputs.image_mask[row].bool()
    if isinstance(group, str):
        if group == "generated":
            return _Positions(torch.zeros(0, dtype=torch.long), generated=True)
        if group == "image":
            found = torch.nonzero(image).flatten()
        elif group == "prompt":
            found = torch.nonzero(real & ~image).flatten()
            found = found[found != n_prompt - 1]
        elif group == "last":
            found = torch.tensor([n_prompt - 1])
        elif group.startswith("region:"):
            found = _region(inputs, group, row)
        else:
            raise ConfigError(
                f"group {group!r}: use one of {', '.join(GROUPS)}, 'region:R,C/N' or a list "
                "of sequence positions."
            )
        if found.numel() == 0:
            raise ConfigError(f"group {group!r} is empty in batch row {row} (no such tokens).")
        return _Positions(found.cpu())
    found = torch.as_tensor(group, dtype=torch.long).flatten().cpu()
    if found.numel() == 0:
        raise ConfigError("An empty list of positions; give at least one position.")
    outside = found[(found < 0) | (found >= n_prompt)]
    if outside.numel():
        raise ConfigError(
            f"positions {outside.tolist()[:5]} are outside the sequence (0..{n_prompt - 1}); "
            "generated tokens are the group 'generated'."
        )
    padding = found[~real[found].cpu()]
    if padding.numel():
        raise ConfigError(f"positions {padding.tolist()[:5]} are padding in batch row {row}.")
    return _Positions(found)


def _region(inputs: ModelInputs, group: str, row: int) -> Int[Tensor, " n"]:
    """Positions of 'region:R,C/N' in row `row`."""
    try:
        place, side = group.removeprefix("region:").split("/")
        name, per_side = ",".join(str(int(v)) for v in place.split(",")), int(side)
    except ValueError as error:
        raise ConfigError(f"group {group!r}: write 'region:R,C/N', e.g. 'region:0,1/2'.") from error
    try:
        regions = image_regions(inputs, per_side, row)
    except ConfigError as error:
        raise ConfigError(f"group {group!r} cannot be placed: {error}") from error
    if name not in regions:
        raise ConfigError(f"group {group!r}: regions are {', '.join(regions)} for N={per_side}.")
    return regions[name]


def attention_knockout_hooks(
    model: Any,
    inputs: ModelInputs,
    edges: Sequence[str | tuple[Group, Group]] | str | tuple[Group, Group],
    layers: Sequence[int] | range | int,
    heads: Sequence[int] | range | int | None = None,
    rows: Sequence[int] | range | int | None = None,
) -> list[tuple[Any, Any, bool]]:
    """(module, pre-hook, with_kwargs) triples that block `edges` (source group, target group:
    the target's queries stop reading the source's keys) in block indices `layers`, for `heads`
    (all when None) and batch `rows` (all when None)."""
    if isinstance(edges, str) or (
        isinstance(edges, tuple) and len(edges) == 2 and not isinstance(edges[0], tuple)
    ):
        edges = [edges]  # one edge
    pairs = [parse_edge(edge) for edge in edges]
    if not pairs:
        raise ConfigError("No edges to knock out; give at least one (source, target) pair.")
    layer_list = _indices(layers, model.n_blocks, "layers", "block")
    n_heads = int(model.adapter.text_config().num_attention_heads)
    head_list = None if heads is None else _indices(heads, n_heads, "heads", "head")
    row_list = _indices(
        range(inputs.batch_size) if rows is None else rows, inputs.batch_size, "rows", "batch row"
    )
    resolved = {
        row: [(group_positions(inputs, k, row), group_positions(inputs, q, row)) for k, q in pairs]
        for row in row_list
    }
    step = SequenceStep(inputs.n_positions, inputs.batch_size, "knockout")

    @needs_bridge
    def edit(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if hidden is None or "attention_mask" not in kwargs:
            raise ConfigError("attention_knockout: this attention module takes no attention_mask.")
        kwargs["attention_mask"] = _blocked_mask(
            kwargs["attention_mask"],
            int(hidden.shape[1]),
            step,
            resolved,
            head_list,
            n_heads,
            hidden,
        )
        return args, kwargs

    blocks = model.adapter.decoder_layers()
    hooks: list[tuple[Any, Any, bool]] = [(model.adapter.language_model(), step.enter, True)]
    hooks += [(blocks[layer].self_attn, edit, True) for layer in layer_list]
    return hooks


def _blocked_mask(
    mask: Tensor | None,
    n_queries: int,
    step: SequenceStep,
    resolved: dict[int, list[tuple[_Positions, _Positions]]],  # (source/keys, target/queries)
    heads: list[int] | None,
    n_heads: int,
    hidden: Tensor,
) -> Tensor:
    """`mask` (additive [batch, 1 or heads, q, k], boolean, or None for plain causal) with the
    knocked-out edges set to the dtype's minimum."""
    n_keys = int(mask.shape[-1]) if mask is not None else step.end
    device, dtype = hidden.device, hidden.dtype
    queries, keys = step.positions(n_queries, device), step.positions(n_keys, device)
    lowest = torch.finfo(dtype).min
    if mask is None:
        causal = keys[None, :] > queries[:, None]
        mask = torch.zeros(step.batch, 1, n_queries, n_keys, dtype=dtype, device=device)
        mask = mask.masked_fill(causal, lowest)
    elif mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, lowest)
    if mask.shape[-2] != n_queries:
        mask = mask[..., -n_queries:, :]
    blocked = torch.zeros(mask.shape[0], n_queries, n_keys, dtype=torch.bool, device=device)
    for row, pairs in resolved.items():
        for key_group, query_group in pairs:
            blocked[row] |= (
                query_group.member(queries, step.n_prompt)[:, None]
                & key_group.member(keys, step.n_prompt)[None, :]
            )
    if not blocked.any():
        return mask
    if heads is None:
        return mask.masked_fill(blocked[:, None], lowest)
    chosen = torch.zeros(n_heads, dtype=torch.bool, device=device)
    chosen[heads] = True
    full = mask.expand(mask.shape[0], n_heads, n_queries, n_keys)
    return full.masked_fill(blocked[:, None] & chosen[None, :, None, None], lowest)


def _indices(values: Sequence[int] | range | int, size: int, name: str, what: str) -> list[int]:
    """Sorted distinct indices in 0..size-1, or a clear error naming `name`."""
    found = [values] if isinstance(values, int) else list(values)
    if not found:
        raise ConfigError(f"{name} is empty; give at least one {what} index.")
    bad = [v for v in found if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < size]
    if bad:
        error = LayerIndexError if name == "layers" else ConfigError
        raise error(f"{name} holds {bad[:5]}; this model has {what}s 0..{size - 1}.")
    return sorted(set(found))


@contextmanager
def attention_knockout(
    model: Any,
    inputs: ModelInputs,
    edges: Sequence[str | tuple[Group, Group]] | str | tuple[Group, Group],
    layers: Sequence[int] | range | int,
    heads: Sequence[int] | range | int | None = None,
    rows: Sequence[int] | range | int | None = None,
) -> Iterator[None]:
    """Inside the block, every forward of `model` on `inputs` (a forward pass, `generate`,
    `trace`, with KV cache) has the flow along `edges` blocked in block indices `layers`: each
    edge is (source, target), e.g. ("image", "last") or "image->last", and stops the target's
    queries reading the source's keys; for `heads` (all when None) and batch `rows` (all when
    None). Groups: `GROUPS`, "region:R,C/N", or sequence positions."""
    handles = [
        module.register_forward_pre_hook(hook, with_kwargs=with_kwargs)
        for module, hook, with_kwargs in attention_knockout_hooks(
            model, inputs, edges, layers, heads, rows
        )
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
