"""Collect chosen activations over a benchmark's items, for probes and sparse autoencoders.

The same run machinery as `mmlens run` (batches, parts that appear whole, resume, torchrun
shards; `runner.run_items`) with another job per batch: generate greedily with hooks on the
chosen TransformerLens names, and keep each hook's activation at the chosen positions only
(residual-stream hooks alone run on the fast path, `mmlens.fast_path`; others on the bridge).

Position kinds (per item, for each hook):
    image         every image token ([n_img, ...]; vision hooks: every patch row of the tower)
    image_mean    the image tokens' mean ([1, ...])
    regions:N     the mean of each of N x N regions of the patch grid ([N*N, ...])
    last          the last prompt position, the one that predicts the first answer token
    generated     every generated token the model read back (all but the last generated one,
                  which no forward processes), in order

A part holds `activations.safetensors` (one tensor per hook and kind: the rows of its items
one after another) and an index table (one row per item, hook and kind: its layer, where its
rows start, how many, the sequence positions, the generated token ids of the rows, and every
generated token as text, for finding words).
"""

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mmlens.benchmarks.items import BenchmarkItem
from mmlens.errors import ConfigError, MMLensError
from mmlens.fast_path import RESIDUAL, recording, runner, use_fast_path
from mmlens.generation import greedy_decode_batch
from mmlens.inputs import ModelInputs, image_regions
from mmlens.token_text import token_texts

SIMPLE_KINDS = ("image", "image_mean", "last", "generated")
VISION_PREFIXES = ("vision_encoder.", "vision_projector.", "hook_vision_out", "hook_image_embeds")
Result = tuple[dict[str, Any], pd.DataFrame | None, dict[str, Tensor] | None]


class StorageError(ConfigError):
    """A hook whose activation cannot be stored per position: a setting, not a bad item."""


def check_kind(kind: str) -> str:
    """A position kind, checked (see the module docstring)."""
    if kind in SIMPLE_KINDS or re.fullmatch(r"regions:[1-9]\d*", kind):
        return kind
    raise ConfigError(
        f"position kind {kind!r}; use {', '.join(SIMPLE_KINDS)} or regions:N (N x N regions)."
    )


def hook_layer(name: str) -> int:
    """The number in a hook's name, as a layer: for the residual stream HF `hidden_states`
    numbering (`blocks.b.hook_resid_pre` is b, `hook_resid_post` b + 1), for other block and
    tower-layer hooks the block's index; -1 for hooks outside any block."""
    found = re.search(r"(?:blocks|encoder_layers)\.(\d+)\.(\S+)", name)
    if not found:
        return -1
    block = int(found[1])
    after = name.startswith("blocks.") and found[2] in ("hook_resid_post", "hook_out")
    return block + 1 if after else block


def is_vision_hook(name: str) -> bool:
    """Whether `name` hooks the image tower or projector (rows are patches, not positions)."""
    return name.startswith(VISION_PREFIXES)


@dataclass(frozen=True)
class ActivationSettings:
    """What is collected; all but `flush_every` and `batch_size` are the store's identity."""

    hooks: Sequence[str]  # kept as a tuple
    positions: Sequence[str] = ("image_mean", "last")
    max_new_tokens: int = 0  # 0: the prompt only (no generated positions)
    suffix: str = ""
    flush_every: int = 16
    batch_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hooks", tuple(self.hooks))
        object.__setattr__(self, "positions", tuple(check_kind(k) for k in self.positions))
        if not self.hooks or not self.positions:
            raise ConfigError("Collect at least one hook at one position kind.")
        if min(self.flush_every, self.batch_size) < 1 or self.max_new_tokens < 0:
            raise ConfigError(
                f"flush_every={self.flush_every}, batch_size={self.batch_size}, max_new_tokens="
                f"{self.max_new_tokens}: the first two must be >= 1, the last >= 0."
            )
        if "generated" in self.positions and self.max_new_tokens < 2:
            raise ConfigError(
                "position kind 'generated' needs max_new_tokens >= 2 (the last generated token "
                "is never read back by the model)."
            )
        vision = [name for name in self.hooks if is_vision_hook(name)]
        sequence_only = [k for k in self.positions if k in ("last", "generated")]
        if vision and sequence_only:
            raise ConfigError(
                f"{vision[0]} runs on image patches, which have no {sequence_only[0]!r} "
                "position; collect vision hooks at image, image_mean or regions:N."
            )

    def identity(self) -> dict[str, Any]:
        return {
            "hooks": list(self.hooks),
            "positions": list(self.positions),
            "max_new_tokens": self.max_new_tokens,
            "suffix": self.suffix,
        }


def check_hooks(model: Any, settings: ActivationSettings) -> None:
    """Refuse hook names the model does not have, before anything is written."""
    known = model.hook_dict
    unknown = [name for name in settings.hooks if name not in known]
    if unknown:
        near = [name for name in known if name.split(".")[-1] == unknown[0].split(".")[-1]][:3]
        hint = f" (e.g. {', '.join(near)})" if near else ""
        raise ConfigError(f"hook {unknown[0]!r} is not a hook of this model{hint}.")
    if "hook_pixel_values" in settings.hooks:
        raise ConfigError("hook_pixel_values holds pixels, not per-patch activations.")
    patterns = [n for n in settings.hooks if n.endswith(("hook_pattern", "hook_attn_scores"))]
    if patterns:
        raise ConfigError(
            f"{patterns[0]} is [batch, head, query, key], not per position; use "
            "trace(visual_attention=True) for attention on the image."
        )


class _Capture:
    """Hook functions that keep, per batch row, each hook's activation at the chosen positions."""

    def __init__(self, inputs: ModelInputs, settings: ActivationSettings) -> None:
        self.inputs = inputs
        self.settings = settings
        self.calls: dict[str, int] = {}
        self.rows: list[dict[tuple[str, str], list[Tensor]]] = [
            {} for _ in range(inputs.batch_size)
        ]
        self.active: list[list[bool]] = []  # per step: which rows produced that step's token

    def hooks(self) -> list[tuple[str, Callable[[Tensor, object], None]]]:
        return [(name, self._hook(name)) for name in self.settings.hooks]

    def on_step(self, step: int, logits: Tensor, tokens: Sequence[int], active: Any) -> None:
        self.active.append(list(active) if active is not None else [True] * len(tokens))

    def _keep(self, row: int, name: str, kind: str, value: Tensor) -> None:
        self.rows[row].setdefault((name, kind), []).append(value.detach().cpu())

    def _hook(self, name: str) -> Callable[[Tensor, object], None]:
        def capture(activation: Tensor, hook: object) -> None:
            call = self.calls.get(name, 0)
            self.calls[name] = call + 1
            if isinstance(activation, tuple):
                activation = activation[0]
            if is_vision_hook(name):
                if call == 0:
                    self._vision(name, activation)
            elif call == 0:
                self._prefill(name, activation)
            elif "generated" in self.settings.positions:
                for row in range(self.inputs.batch_size):
                    if self.active[call - 1][row]:
                        self._keep(row, name, "generated", activation[row, -1:])

        return capture

    def _prefill(self, name: str, activation: Tensor) -> None:
        n_positions = self.inputs.n_positions
        if activation.dim() < 2 or activation.shape[1] != n_positions:
            raise StorageError(
                f"{name} has shape {tuple(activation.shape)}, not [batch, {n_positions} "
                "positions, ...]: it cannot be stored per position (attention patterns are "
                "not; use trace(visual_attention=True) for those)."
            )
        for row in range(self.inputs.batch_size):
            image = torch.nonzero(self.inputs.image_mask[row]).flatten()
            for kind in self.settings.positions:
                if kind == "last":
                    self._keep(row, name, kind, activation[row, -1:])
                elif kind in ("image", "image_mean") or kind.startswith("regions:"):
                    if not len(image):
                        raise ConfigError(f"row {row} has no image tokens for {kind!r}.")
                    picked = activation[row, image.to(activation.device)]
                    self._keep(row, name, kind, _pool(picked, kind, self._regions(row)))

    def _vision(self, name: str, activation: Tensor) -> None:
        batch = self.inputs.batch_size
        if activation.shape[0] != batch:
            if batch != 1:
                raise StorageError(
                    f"{name} holds {activation.shape[0]} images (tiles or several images) for "
                    f"{batch} rows; collect it with batch_size=1."
                )
            activation = activation.reshape(1, -1, *activation.shape[2:])
        for row in range(batch):
            patches = activation[row]
            for kind in self.settings.positions:
                regions = self._regions(row) if kind.startswith("regions:") else None
                if regions is not None and len(patches) != int(self.inputs.image_mask[row].sum()):
                    raise StorageError(
                        f"{name} has {len(patches)} patch rows, not one per image token: "
                        f"{kind!r} cannot place them; use image or image_mean."
                    )
                self._keep(row, name, kind, _pool(patches, kind, regions))

    def _regions(self, row: int) -> list[Tensor] | None:
        kinds = [k for k in self.settings.positions if k.startswith("regions:")]
        if not kinds:
            return None
        per_side = int(kinds[0].split(":")[1])
        image = torch.nonzero(self.inputs.image_mask[row]).flatten()
        try:
            found = image_regions(self.inputs, per_side, row)
        except ConfigError as error:  # a family without a patch grid: a setting, not an item
            raise StorageError(f"{kinds[0]!r} cannot be placed here: {error}") from None
        return [torch.searchsorted(image, positions) for positions in found.values()]

    def positions(self, row: int, kind: str, n_generated: int) -> list[int]:
        """The positions of one row's stored vectors of `kind` in the item's own sequence (as
        if run alone, without a batch's left padding); empty where pooled."""
        pad = int((self.inputs.attention_mask[row] == 0).sum())
        n = self.inputs.n_positions - pad
        if kind == "last":
            return [n - 1]
        if kind == "image":
            return (torch.nonzero(self.inputs.image_mask[row]).flatten() - pad).tolist()
        if kind == "generated":
            return list(range(n, n + n_generated))
        return []


def _pool(values: Tensor, kind: str, regions: list[Tensor] | None) -> Tensor:
    if kind == "image_mean":
        return values.float().mean(dim=0, keepdim=True).to(values.dtype)
    if kind.startswith("regions:"):
        assert regions is not None
        means = [values[index.to(values.device)].float().mean(dim=0) for index in regions]
        return torch.stack(means).to(values.dtype)
    return values


def collect_batch(
    model: Any, batch: list[BenchmarkItem], settings: ActivationSettings
) -> list[Result]:
    """Activations of one batch of items: (item result, index rows, tensors) per item; a batch
    with a bad item is redone one item at a time, so that only the bad ones fail."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        inputs = model.prepare(
            [item.image for item in batch], [item.prompt + settings.suffix for item in batch]
        )
        capture = _Capture(inputs, settings)
        fast = use_fast_path(model) and all(RESIDUAL.fullmatch(n) for n in settings.hooks)
        layers = model._all_layers
        with runner(model, fast), recording(model, fast, layers, capture.hooks()):
            ids = greedy_decode_batch(
                model.adapter.hf_model,
                inputs,
                max(settings.max_new_tokens, 1),
                model.adapter.eos_token_ids,
                model._pad_token_id(),
                on_step=capture.on_step,
            )
    except StorageError:
        raise
    except MMLensError as error:
        if len(batch) > 1:
            return [found for item in batch for found in collect_batch(model, [item], settings)]
        failed = {"output": None, "n_tokens": 0, "status": "failed", "error": str(error)}
        return [(failed, None, None)]
    results: list[Result] = []
    for row in range(len(batch)):
        new = ids[row] if settings.max_new_tokens else []
        said = token_texts(model.tokenizer, new)
        tensors: dict[str, Tensor] = {}
        index = []
        for (name, kind), values in capture.rows[row].items():
            stacked = torch.cat(values)
            positions = capture.positions(row, kind, len(stacked))
            key = f"{name}|{kind}"
            tensors[key] = stacked.contiguous()
            index.append(
                {
                    "hook": name,
                    "layer": hook_layer(name),
                    "kind": kind,
                    "key": key,
                    "count": len(stacked),
                    "shape": list(stacked.shape[1:]),
                    "positions": [] if is_vision_hook(name) else positions,
                    "token_ids": new[: len(stacked)] if kind == "generated" else [],
                    "generated_tokens": said,  # every new token as text, the last one too
                }
            )
        text = model.tokenizer.decode(new, skip_special_tokens=True) if new else ""
        result = {"output": text, "n_tokens": len(new), "status": "ok", "error": ""}
        results.append((result, pd.DataFrame(index), tensors))
    seconds = (time.perf_counter() - start) / len(batch)
    cpu_seconds = (time.process_time() - cpu) / len(batch)
    for result, _, _ in results:
        result.update(seconds=seconds, cpu_seconds=cpu_seconds, batch_size=len(batch))
    return results
