"""Build `mmlens/priors` as a `LlavaForConditionalGeneration` around the frozen SmolLM2.

The vision tower, the projector and the image token's embedding row are the only parts we train
and ship (`trained.safetensors`, `TRAINED_PREFIXES`); everything else is SmolLM2-135M-Instruct as
pretrained. The language model's input and output embeddings stay tied, as in SmolLM2.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import (
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from mmlens.zoo.tiny import llava_processor

IMAGE_TOKEN = "<image>"
END_TOKEN = "<|im_end|>"
TRAINED_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")
IMAGE_ROW = "image_token_embedding"


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower we train: 64x64 images in 16x16 patches, so only 16 image tokens."""

    image_size: int = 64
    patch_size: int = 16
    d_vision: int = 192
    d_mlp: int = 768
    blocks: int = 4
    heads: int = 4
    seed: int = 0

    @property
    def n_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


SPEC = VisionSpec()


def build_processor(tokenizer: Any, spec: VisionSpec = SPEC) -> LlavaProcessor:
    """LLaVA's processor over SmolLM2's tokenizer with `<image>` added as a special token."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    # SmolLM2-Instruct's own choices, set explicitly: transformers versions read the GGUF's
    # special tokens differently (5.17 left the pad token unset and trained a different end).
    tokenizer.eos_token = END_TOKEN
    tokenizer.pad_token = END_TOKEN
    if tokenizer("x").input_ids != tokenizer("x", add_special_tokens=False).input_ids:
        raise RuntimeError(
            "this transformers version adds special tokens to SmolLM2's text; "
            "mmlens/priors was trained without (transformers 5.24)"
        )
    return llava_processor(tokenizer, spec.image_size, spec.patch_size)


def build_model(
    language_model: Any, processor: LlavaProcessor, spec: VisionSpec = SPEC
) -> LlavaForConditionalGeneration:
    """A LLaVA whose language model is `language_model` (weights copied) and whose vision tower
    and projector are freshly initialised with `spec.seed`. The `<image>` row is zero: its input is
    replaced by image features, and as an output its logit is 0, far below SmolLM2's top logits."""
    tokenizer = processor.tokenizer
    text_config = language_model.config.to_dict()
    text_config["vocab_size"] = len(tokenizer)
    vision = CLIPVisionConfig(
        hidden_size=spec.d_vision,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.blocks,
        num_attention_heads=spec.heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.d_vision,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(language_model.config.tie_word_embeddings),
        architectures=["LlavaForConditionalGeneration"],
    )
    torch.manual_seed(spec.seed)
    model = LlavaForConditionalGeneration(config).eval()
    pretrained = language_model.model.state_dict()
    embeddings = pretrained.pop("embed_tokens.weight")
    target = model.model.language_model
    missing, unexpected = target.load_state_dict(pretrained, strict=False)
    if unexpected or set(missing) != {"embed_tokens.weight"}:
        raise RuntimeError(f"language model weights do not fit: {missing} {unexpected}")
    with torch.no_grad():
        rows = target.embed_tokens.weight
        rows[: embeddings.shape[0]] = embeddings
        rows[embeddings.shape[0] :] = 0.0
        if not config.tie_word_embeddings:
            model.lm_head.weight[: embeddings.shape[0]] = language_model.lm_head.weight
            model.lm_head.weight[embeddings.shape[0] :] = 0.0
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def trained_state(model: LlavaForConditionalGeneration) -> dict[str, Tensor]:
    """The parts we train: vision tower, projector and the image token's embedding row."""
    state = {
        name: tensor.detach().clone().contiguous()
        for name, tensor in model.state_dict().items()
        if name.startswith(TRAINED_PREFIXES)
    }
    row = model.model.language_model.embed_tokens.weight[model.config.image_token_id]
    state[IMAGE_ROW] = row.detach().clone()
    return state


def save_trained(
    model: LlavaForConditionalGeneration, path: Path, metadata: dict[str, str]
) -> None:
    save_file(trained_state(model), str(path), metadata=metadata)


def load_trained(model: LlavaForConditionalGeneration, path: Path) -> None:
    """Put the trained parts from `path` into `model` (strictly: every part, nothing else)."""
    state = load_file(str(path))
    row = state.pop(IMAGE_ROW)
    expected = set(trained_state(model)) - {IMAGE_ROW}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise RuntimeError(
            f"{path} does not hold this model's trained parts (missing {missing}, extra {extra})"
        )
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.model.language_model.embed_tokens.weight[model.config.image_token_id] = row
