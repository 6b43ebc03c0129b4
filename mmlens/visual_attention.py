"""Visual attention recorded while tracing: per step, block and head, the share of the predicting
position's attention that goes to image tokens (and to each region of the patch grid).

Each block's attention pattern (`blocks.{b}.attn.hook_pattern`) is reduced as it is made to
[batch, head] shares (and [batch, head, region]); no pattern is kept from step to step. Keys are
mapped to sequence positions by `steps.SequenceStep`, so a sliding window's shorter cache counts
only the image tokens it still sees. Shares of block b are stored at recorded layer b + 1 (the
layer that block produces); layer 0, the embeddings, has no attention and holds NaN.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mmlens.errors import ConfigError
from mmlens.inputs import ModelInputs, image_regions
from mmlens.steps import SequenceStep


class VisualAttentionRecorder:
    """Hooks that turn each kept block's pattern into image (and region) shares per step."""

    def __init__(
        self,
        inputs: ModelInputs,
        kept_blocks: Sequence[int],
        regions: int | None = None,
    ) -> None:
        self.kept = list(kept_blocks)
        self.step = SequenceStep(inputs.n_positions, inputs.batch_size, "visual-attention record")
        self.image = inputs.image_mask.bool().cpu()
        self.n_regions = 0
        self.region_of: Tensor | None = None  # [batch, pos]: region index, -1 outside any
        if regions is not None:
            self.region_of = _region_index(inputs, regions)
            self.n_regions = regions * regions
        self.on_device: dict[torch.device, tuple[Tensor, Tensor | None]] = {}
        self.captured: dict[int, Tensor] = {}
        self.rows: list[dict[str, list[np.ndarray]]] = []

    def hooks(self) -> list[tuple[str, Callable[[Tensor, object], None]]]:
        """TransformerLens forward hooks on every kept block's attention pattern."""
        return [(f"blocks.{block}.attn.hook_pattern", self._capture(block)) for block in self.kept]

    @contextmanager
    def counting(self, language_model: torch.nn.Module) -> Iterator[None]:
        """Keep `step` up to date while inside (a pre-hook on the language model)."""
        handle = language_model.register_forward_pre_hook(self.step.enter, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def _capture(self, block: int) -> Callable[[Tensor, object], None]:
        def capture(pattern: Tensor, hook: object) -> None:
            last = pattern[:, :, -1, :].detach().float()  # [batch, head, key]
            image_of, region_of = self._masks(last.device)
            keys = self.step.positions(last.shape[-1], last.device)
            inside = keys < self.step.n_prompt
            image = torch.zeros_like(last[:, 0])
            image[:, inside] = image_of[:, keys[inside]].to(last.dtype)
            shares = [(last * image[:, None, :]).sum(-1, keepdim=True)]
            if region_of is not None:
                region = torch.full_like(image, -1, dtype=torch.long)
                region[:, inside] = region_of[:, keys[inside]]
                onehot = torch.nn.functional.one_hot(region.clamp(min=0), self.n_regions)
                onehot = (onehot * (region >= 0)[..., None]).to(last.dtype)
                shares.append(torch.einsum("bhk,bkr->bhr", last, onehot))
            self.captured[block] = torch.cat(shares, dim=-1)  # [batch, head, 1 + region]

        return capture

    def _masks(self, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """The image mask and region index on `device`, moved there once per device."""
        if device not in self.on_device:
            region_of = None if self.region_of is None else self.region_of.to(device)
            self.on_device[device] = (self.image.to(device), region_of)
        return self.on_device[device]

    def record(
        self, step: int, logits: Tensor, tokens: Sequence[int], active: Sequence[bool] | None = None
    ) -> None:
        """Store one step's shares for every active row (a `greedy_decode_batch` callback)."""
        while len(self.rows) < len(tokens):
            self.rows.append({})
        missing = [block for block in self.kept if block not in self.captured]
        if missing:
            raise ConfigError(f"No attention pattern was seen for blocks {missing[:5]} this step.")
        device = self.captured[self.kept[-1]].device  # blocks may sit on several devices
        shares = [self.captured[block].to(device) for block in self.kept]
        stacked = torch.stack(shares, dim=1).cpu()
        blank = torch.full_like(stacked[:, :1], float("nan"))  # layer 0: the embeddings
        stacked = torch.cat([blank, stacked], dim=1).numpy()  # [batch, layer, head, 1 + region]
        for row in range(len(tokens)):
            if active is None or active[row]:
                self.rows[row].setdefault("image_attention", []).append(stacked[row, ..., 0])
                if self.n_regions:
                    self.rows[row].setdefault("region_attention", []).append(stacked[row, ..., 1:])
        self.captured.clear()

    def arrays(self, row: int = 0) -> dict[str, Float[np.ndarray, "step layer head ..."]]:
        """A batch row's steps stacked: image_attention [step, layer, head] and, with regions,
        region_attention [step, layer, head, region] (regions "r,c" in raster order)."""
        return {name: np.stack(values) for name, values in self.rows[row].items()}


def _region_index(inputs: ModelInputs, per_side: int) -> Tensor:
    """[batch, pos]: each image position's region (r * per_side + c), -1 elsewhere."""
    if isinstance(per_side, bool) or not isinstance(per_side, int) or per_side < 1:
        raise ConfigError(f"attention_regions={per_side!r}; give regions per side, e.g. 2 or 3.")
    index = torch.full(inputs.image_mask.shape, -1, dtype=torch.long)
    for row in range(inputs.batch_size):
        if not bool(inputs.image_mask[row].any()):
            continue  # a text-only row: no region gets any attention
        for number, positions in enumerate(image_regions(inputs, per_side, row).values()):
            index[row, positions.cpu()] = number
    return index


def attention_recorder(
    inputs: ModelInputs, kept_blocks: Sequence[int], wanted: bool, regions: int | None
) -> VisualAttentionRecorder | None:
    """A recorder when `wanted` or `regions` is given (regions imply the image shares)."""
    if not isinstance(wanted, bool):
        raise ConfigError(f"visual_attention={wanted!r}; give True or False.")
    if not wanted and regions is None:
        return None
    return VisualAttentionRecorder(inputs, kept_blocks, regions)


def counting(
    recorder: VisualAttentionRecorder | None, language_model: torch.nn.Module
) -> AbstractContextManager[None]:
    """`recorder.counting(language_model)`, or nothing to do without a recorder."""
    return nullcontext() if recorder is None else recorder.counting(language_model)


def both(*callbacks: Callable[..., None]) -> Callable[..., None]:
    """One step callback that calls each of `callbacks` in turn."""

    def call(*args: object, **kwargs: object) -> None:
        for callback in callbacks:
            callback(*args, **kwargs)

    return call
