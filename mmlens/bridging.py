"""The TransformerBridge under a `HookedLVLM`: TransformerLens's bridge over the adapter's
Hugging Face model, with mmlens's multimodal hook aliases."""

from torch import nn
from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components import AttentionBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module

from mmlens.adapters.base import Adapter


def _forward_cache_kwarg(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Hand transformers >= 5.24's `cache` kwarg to the bridge under its older name.

    TransformerLens 4.3's attention bridge reads only `past_key_values`; without this, decoding
    with the KV cache silently attends to the new token alone.
    """
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


def build_bridge(adapter: Adapter) -> TransformerBridge:
    """Wrap the adapter's HF model in a TransformerBridge with mmlens's multimodal hook aliases."""
    if adapter.bridge_adapter is not None:
        ArchitectureAdapterFactory.register_adapter(
            adapter.bridge_architecture, adapter.bridge_adapter
        )
    bridge = build_bridge_from_module(
        adapter.hf_model,
        adapter.bridge_architecture,
        hf_config=adapter.hf_model.config,
        tokenizer=adapter.tokenizer,
    )
    bridge.hook_aliases = {**bridge.hook_aliases, **adapter.hook_aliases}
    # TransformerLens has no public way to add aliases after construction; these are the two
    # calls its own constructor makes to register them.
    bridge._register_aliases()
    bridge._scan_existing_hooks(bridge, "")
    for block in bridge.blocks:
        # The plain AttentionBridge hands its keywords to HF's attention, which reads `cache`.
        if type(block.attn) is not AttentionBridge:
            block.attn.register_forward_pre_hook(_forward_cache_kwarg, with_kwargs=True)
    return bridge
