"""Helpers shared by test modules (tests/ is on pytest's pythonpath; the package is not)."""

from pathlib import Path

from transformers import LlavaForConditionalGeneration

from mmlens.zoo.tiny import TinyLlavaSpec

# Several shapes of the architecture, as transformers' own LLaVA tests vary them.
SPECS: dict[str, TinyLlavaSpec] = {
    "gqa": TinyLlavaSpec(),
    "mha_full_last": TinyLlavaSpec(
        n_kv_heads=4, vision_feature_layer=-1, vision_feature_select_strategy="full", seed=1
    ),
    "mha_deeper": TinyLlavaSpec(n_blocks=6, n_kv_heads=4, seed=2),
    "img576": TinyLlavaSpec(
        image_size=336, patch_size=14, d_vision=16, vision_blocks=2, d_model=32, d_mlp=64, seed=3
    ),
}


def load_hf(path: Path) -> LlavaForConditionalGeneration:
    """The Hugging Face reference model, with the same (eager) attention kernel as the bridge."""
    model = LlavaForConditionalGeneration.from_pretrained(path, attn_implementation="eager")
    return model.eval()
