"""Remove decoder blocks from the computation itself (prefill, every step, KV cache included)."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

from mmlens.adapters.base import Adapter
from mmlens.errors import ConfigError, LayerIndexError


def kept_blocks(n_blocks: int, skip_layers: Iterable[int] | None) -> list[int]:
    """Indices of the blocks that still run; `skip_layers` are block indices 0..n_blocks-1."""
    skipped = sorted(set(skip_layers or ()))
    for block in skipped:
        if not isinstance(block, int) or not 0 <= block < n_blocks:
            raise LayerIndexError(
                f"skip_layers holds block {block!r}, but the model has blocks 0..{n_blocks - 1} "
                f"(block b produces layer b+1 in hidden_states numbering)."
            )
    kept = [block for block in range(n_blocks) if block not in skipped]
    if not kept:
        raise ConfigError(
            f"skip_layers={skipped} removes all {n_blocks} blocks; keep at least one."
        )
    return kept


def _set_layer_index(block: nn.Module, index: int) -> None:
    """Point every attention module of a block at KV-cache slot `index`."""
    for module in block.modules():
        for attribute in ("layer_idx", "_layer_idx"):
            if getattr(module, attribute, None) is not None:
                setattr(module, attribute, index)


@contextmanager
def skipped_blocks(adapter: Adapter, skip_layers: Iterable[int] | None) -> Iterator[list[int]]:
    """Run the model as if the skipped blocks had been deleted; yields the kept block indices.

    The kept blocks are renumbered 0..k-1 for the KV cache and the config says k layers, exactly
    like a Hugging Face model whose skipped decoder layers were removed; all is restored on exit.
    """
    layers = adapter.decoder_layers()
    kept = kept_blocks(len(layers), skip_layers)
    if len(kept) == len(layers):
        yield kept
        return
    config = adapter.text_config()
    saved_count = config.num_hidden_layers
    saved_types = getattr(config, "layer_types", None)
    try:
        adapter.set_decoder_layers(nn.ModuleList([layers[block] for block in kept]))
        config.num_hidden_layers = len(kept)
        if saved_types is not None:
            config.layer_types = [saved_types[block] for block in kept]
        for new_index, block in enumerate(kept):
            _set_layer_index(layers[block], new_index)
        yield kept
    finally:
        for block in kept:
            _set_layer_index(layers[block], block)
        adapter.set_decoder_layers(layers)
        config.num_hidden_layers = saved_count
        if saved_types is not None:
            config.layer_types = saved_types
