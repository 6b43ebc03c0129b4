"""The fast runner behind `trace` and `generate`: the plain `transformers` modules, no bridge.

TransformerLens's bridge replaces every module of the Hugging Face model with a Python component
(hook points, a reimplemented attention, per-call signature checks); that costs little next to a
large model's matrix work but dominates a GPU decode step. When nothing needs the bridge (no
TransformerLens hook and no hook on a bridge component is registered, and the caller wants no
attention patterns), `plain_modules` puts the original modules back for the duration, and the
recorder reads the residual stream with forward hooks on the decoder layers instead of hook
points. Tested equal to the bridge path to float rounding for every family.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from transformer_lens.hook_points import HookPoint
from transformers.utils import is_flash_attn_2_available

from mmlens.errors import ConfigError

Hook = tuple[str, Callable[[Tensor, object], Any]]


@dataclass(frozen=True)
class _Swap:
    parent: nn.Module
    name: str
    component: nn.Module  # the bridge's
    original: nn.Module  # the Hugging Face module it wraps


def _swaps(module: nn.Module) -> list[_Swap]:
    """Every bridge component under `module` with the original it wraps, outermost first."""
    found = []
    for name, child in module._modules.items():
        if child is None:
            continue
        original = getattr(child, "original_component", None)
        if isinstance(original, nn.Module) and original is not child:
            found.append(_Swap(module, name, child, original))
            found += _swaps(original)
        else:
            found += _swaps(child)
    return found


def needs_bridge(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a PyTorch hook on a bridge component as one the plain modules would not run (a
    knockout's mask edit): while it is registered, every forward takes the bridge."""
    hook.needs_bridge = True  # type: ignore[attr-defined]
    return hook


@dataclass(frozen=True)
class BridgeParts:
    """A model's hook points and component swaps, found once (walking every module per call
    cost a fifth of a small model's forward)."""

    hook_points: tuple[HookPoint, ...]
    swaps: tuple[_Swap, ...]


def bridge_parts(bridge: nn.Module, hf_model: nn.Module) -> BridgeParts:
    """Walk `bridge` and `hf_model` once (with every block in place, so skipped blocks are not
    missed)."""
    points = tuple(module for module in bridge.modules() if isinstance(module, HookPoint))
    return BridgeParts(points, tuple(_swaps(hf_model)))


def bridge_in_use(parts: BridgeParts) -> bool:
    """Whether a forward now needs the bridge: a hook on any TransformerLens hook point, or a
    hook marked `needs_bridge` on a bridge component. (TransformerLens registers hooks of its
    own on components; they do nothing the plain modules miss. A PyTorch hook of yours on a
    bridge component: mark it, or set `model.use_fast_path = False`.)"""
    for point in parts.hook_points:
        if point._forward_hooks or point._forward_pre_hooks or point._backward_hooks:
            return True
    for swap in parts.swaps:
        hooks = [*swap.component._forward_hooks.values()]
        hooks += [*swap.component._forward_pre_hooks.values()]
        if any(getattr(hook, "needs_bridge", False) for hook in hooks):
            return True
    return False


@contextmanager
def plain_modules(hf_model: nn.Module, swaps: tuple[_Swap, ...] = ()) -> Iterator[None]:
    """Inside, `hf_model` runs its own `transformers` modules (the bridge's set aside);
    `swaps` found earlier are used while every component is still where they found it."""
    moved = any(swap.parent._modules.get(swap.name) is not swap.component for swap in swaps)
    if not swaps or moved:
        swaps = tuple(_swaps(hf_model))
    for swap in swaps:
        setattr(swap.parent, swap.name, swap.original)
    try:
        yield
    finally:
        for swap in reversed(swaps):
            setattr(swap.parent, swap.name, swap.component)


RESIDUAL = re.compile(r"blocks\.\d+\.(hook_in|hook_resid_pre|hook_out|hook_resid_post)")
ALIASES = {"hook_in": "hook_resid_pre", "hook_out": "hook_resid_post"}


def residual_hooks(layers: nn.ModuleList, hooks: list[Hook]) -> list[RemovableHandle]:
    """Register residual-stream hooks named as TransformerLens names them
    (`blocks.{b}.hook_resid_pre` / `hook_resid_post`, or their aliases `hook_in` / `hook_out`)
    as PyTorch hooks on decoder layer b: its input and its output. Each function is called as
    `function(activation, None)`."""
    handles = []
    for name, function in hooks:
        _, block, point = name.split(".")
        point = ALIASES.get(point, point)
        layer = layers[int(block)]
        if point == "hook_resid_pre":

            def before(module: nn.Module, args: tuple, kwargs: dict, f: Any = function) -> None:
                f(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0], None)

            handles.append(layer.register_forward_pre_hook(before, with_kwargs=True))
        elif point == "hook_resid_post":

            def after(module: nn.Module, args: tuple, output: Any, f: Any = function) -> None:
                f(output[0] if isinstance(output, tuple) else output, None)

            handles.append(layer.register_forward_hook(after))
        else:
            raise ValueError(f"{name}: the fast path records the residual stream only.")
    return handles


def use_fast_path(model: Any, needs_patterns: bool = False) -> bool:
    """Whether `model` may run its plain modules now (see the module docstring); a model's
    `use_fast_path = False` keeps every run on the bridge."""
    if needs_patterns or not getattr(model, "use_fast_path", True):
        return False
    return not bridge_in_use(model.bridge_parts)


KERNELS = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3")


def attention_kernel(setting: str, device: torch.device, dtype: torch.dtype) -> str:
    """The fast path's attention kernel for `model.fast_attention`: "auto" picks FlashAttention 2
    where the `flash_attn` package is installed and the model runs on CUDA in 16 bits, else
    PyTorch's SDPA; any other setting is taken as given."""
    if setting not in KERNELS:
        raise ConfigError(f"fast_attention={setting!r}; choose one of {KERNELS}.")
    if setting != "auto":
        return setting
    half = dtype in (torch.float16, torch.bfloat16)
    if device.type == "cuda" and half and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


@contextmanager
def runner(model: Any, fast: bool) -> Iterator[None]:
    """The plain modules when `fast`, with the attention kernel `attention_kernel` picks for the
    model's `fast_attention` (the bridge always computes attention itself, eagerly), else the
    bridge as it is."""
    if not fast:
        yield
        return
    hf_model = model.adapter.hf_model
    setting = getattr(model, "fast_attention", "auto")
    kernel = attention_kernel(setting, model.device, model.dtype)
    with plain_modules(hf_model, model.bridge_parts.swaps):
        before = hf_model.config._attn_implementation
        if kernel != before:
            try:
                hf_model.set_attn_implementation(kernel)
            except (ValueError, ImportError) as error:
                if setting != "auto":
                    raise ConfigError(
                        f"fast_attention={setting!r} cannot run here ({error}); install its "
                        "package or set model.fast_attention = 'auto'."
                    ) from None
                kernel = before  # this architecture has no such kernel: keep the current one
        try:
            yield
        finally:
            if kernel != before:
                hf_model.set_attn_implementation(before)


@contextmanager
def recording(model: Any, fast: bool, layers: nn.ModuleList, hooks: list[Hook]) -> Iterator[None]:
    """Residual hooks for one run: on the plain decoder `layers` (the full list, indexed by
    block) when `fast`, else as TransformerLens hooks on the bridge."""
    if not fast:
        with model.hooks(hooks):
            yield
        return
    handles = residual_hooks(layers, hooks)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
