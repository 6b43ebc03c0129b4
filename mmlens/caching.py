"""How `run_with_cache` runs: on the bridge, or for residual-stream caches on the fast path.

A cache of the language model's residual stream (`blocks.{b}.hook_resid_pre` / `hook_in`,
`hook_resid_post` / `hook_out`) is what the lens needs, and it does not need the bridge's
per-module components: forward hooks on the decoder layers of the plain `transformers` model
give the same tensors (see `mmlens.fast_path`). Any other hook name, keyword or active hook
keeps the call on the bridge, which stays the path for everything TransformerLens-shaped.
"""

from collections.abc import Callable
from typing import Any

from torch import Tensor
from transformer_lens.model_bridge.bridge_core import build_alias_to_canonical_map

from mmlens.cache import LVLMActivationCache
from mmlens.fast_path import RESIDUAL, recording, runner, use_fast_path
from mmlens.inputs import ModelInputs
from mmlens.tl_surface import forward_output

FAST_KEYWORDS = frozenset({"names_filter", "device", "remove_batch_dim", "return_cache_object"})


def selected_names(hook_dict: dict[str, Any], names_filter: Any) -> list[str]:
    """The hook names TransformerLens's `TransformerBridge.run_with_cache` caches for
    `names_filter` (a name or list of names also selects the canonical names they alias)."""
    if names_filter is None:
        return list(hook_dict)
    if callable(names_filter) and not isinstance(names_filter, str):
        return [name for name in hook_dict if names_filter(name)]
    aliases = build_alias_to_canonical_map(hook_dict)
    wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    wanted += [aliases[name] for name in wanted if name in aliases]
    return [name for name in hook_dict if name in wanted]


def fast_cache_names(model: Any, passed: dict[str, Any], stop_at_layer: int | None) -> list[str]:
    """The residual names to cache on the fast path, or [] when the call needs the bridge."""
    if stop_at_layer is not None or set(passed) - FAST_KEYWORDS:
        return []
    names_filter = passed.get("names_filter")
    if names_filter is None or not use_fast_path(model):
        return []
    if not isinstance(names_filter, str | list | tuple) and not callable(names_filter):
        return []  # the bridge gives its own error
    names = selected_names(model.hook_dict, names_filter)
    if not names or not all(RESIDUAL.fullmatch(name) for name in names):
        return []
    return names


def run_fast_cache(
    model: Any, inputs: ModelInputs, names: list[str], device: Any = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and the residual activations `names` ([batch, pos, d_model] each, on `device`
    when given) from one forward of the plain modules."""
    cache: dict[str, Tensor] = {}

    def store(name: str) -> Callable[[Tensor, object], None]:
        def keep(activation: Tensor, hook: object) -> None:
            cache[name] = activation.detach().to(device)

        return keep

    hooks = [(name, store(name)) for name in names]
    with runner(model, True), recording(model, True, model._all_layers, hooks):
        logits = model.adapter.hf_model(**inputs.model_kwargs(), use_cache=False).logits
    return logits, cache  # in the order the hooks ran, as the bridge's cache is


def cached_run(
    model: Any,
    inputs: ModelInputs,
    passed: dict[str, Any],
    stop_at_layer: int | None,
    return_type: str | None,
    loss_per_token: bool,
) -> tuple[Any, LVLMActivationCache | dict[str, Tensor]]:
    """`(output, cache)` for `HookedLVLM.run_with_cache` with checked arguments: the fast path
    when only residual names are cached and nothing needs the bridge, else the bridge's own
    `run_with_cache` with TransformerLens's keywords `passed` through."""
    names = fast_cache_names(model, passed, stop_at_layer)
    if names:
        logits, cache_dict = run_fast_cache(model, inputs, names, passed.get("device"))
        has_batch_dim = not passed.get("remove_batch_dim")
        if not has_batch_dim:
            cache_dict = {name: value[0] for name, value in cache_dict.items()}
        output = forward_output(logits, inputs, return_type, loss_per_token)
    else:
        # With incl_bwd TransformerLens differentiates its own scalar output, so it computes it.
        raw = stop_at_layer is not None or bool(passed.get("incl_bwd"))
        if stop_at_layer is not None:
            passed = {**passed, "stop_at_layer": stop_at_layer}
        extra = inputs.model_kwargs()
        input_ids = extra.pop("input_ids")
        out, cache = model.bridge.run_with_cache(
            input_ids, **extra, return_type=return_type if raw else "logits", **passed
        )
        output = out if raw else forward_output(out, inputs, return_type, loss_per_token)
        if not passed.get("return_cache_object", True):
            return output, cache
        cache_dict, has_batch_dim = dict(cache.cache_dict), cache.has_batch_dim
    if not passed.get("return_cache_object", True):
        return output, cache_dict
    return output, LVLMActivationCache(cache_dict, model.bridge, inputs, has_batch_dim)
