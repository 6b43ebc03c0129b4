"""Tiny random LLaVA checkpoints built in code: the test models and the demo's stand-in.

They have the real `LlavaForConditionalGeneration` architecture and a word-level tokenizer, are
saved with `save_pretrained` (safetensors) and load offline with `transformers` alone.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")
_WORD_LIST = """
USER ASSISTANT : . , ? ! a an the is are of in on at with and to this image picture photo
describe please detail what colour color shape how many where left right top bottom middle
red green blue yellow purple orange black white grey brown pink circle square triangle star
cross ring heart diamond small large big tiny one two three four five there it shows
features contains background dog cat sheep water grass field boy girl man woman ball tree
house sky car table cup red-ish scene
"""
WORDS = tuple(_WORD_LIST.split())


@dataclass(frozen=True)
class TinyLlavaSpec:
    """Sizes of a tiny LLaVA; the defaults give a 4-block LLaMA with grouped-query attention."""

    n_blocks: int = 4
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 128
    d_vision: int = 32
    vision_blocks: int = 3
    vision_heads: int = 4
    image_size: int = 28
    patch_size: int = 7
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    seed: int = 0
    #: Larger than LLaMA's 0.02 so random models have peaked, tie-free next-token distributions.
    init_std: float = 0.15
    #: Embedding rows; None = the tokenizer's size (more rows only widen the unembedding).
    vocab_size: int | None = None
    #: The vision tower's MLP width; None = 2 x d_vision (CLIP-L's is 4 x: 4096 for 1024).
    d_vision_mlp: int | None = None

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError("vision_feature_select_strategy must be 'default' or 'full'")

    @property
    def n_image_tokens(self) -> int:
        patches = (self.image_size // self.patch_size) ** 2
        return patches if self.vision_feature_select_strategy == "default" else patches + 1


DEFAULT_SPEC = TinyLlavaSpec()


def build_tokenizer(
    words: Sequence[str] = WORDS, *, lowercase: bool = False
) -> PreTrainedTokenizerFast:
    """Word-level tokenizer (whitespace and punctuation split) that prepends `<s>`."""
    vocab = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *words))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )


def vision_config(spec: TinyLlavaSpec) -> CLIPVisionConfig:
    """The CLIP tower of a tiny model."""
    return CLIPVisionConfig(
        hidden_size=spec.d_vision,
        intermediate_size=spec.d_vision_mlp or 2 * spec.d_vision,
        num_hidden_layers=spec.vision_blocks,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.d_vision,
    )


def text_config(spec: TinyLlavaSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The LLaMA language model of a tiny model, over `tokenizer`'s vocabulary."""
    return LlamaConfig(
        vocab_size=spec.vocab_size or len(tokenizer),
        hidden_size=spec.d_model,
        intermediate_size=spec.d_mlp,
        num_hidden_layers=spec.n_blocks,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=spec.init_std,
    )


def build_llava(
    spec: TinyLlavaSpec, tokenizer: PreTrainedTokenizerFast
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised LLaVA of these sizes, and its processor."""
    vision = vision_config(spec)
    text = text_config(spec, tokenizer)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        architectures=["LlavaForConditionalGeneration"],
    )
    torch.manual_seed(spec.seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = llava_processor(
        tokenizer, spec.image_size, spec.patch_size, spec.vision_feature_select_strategy
    )
    return model, processor


def llava_processor(
    tokenizer: Any, image_size: int, patch_size: int, strategy: str = "default"
) -> LlavaProcessor:
    """LLaVA's processor for square `image_size` images (CLIP's normalisation) over `tokenizer`,
    whose image token is `<image>`."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        image_token="<image>",
        num_additional_image_tokens=1,
    )


def build_tiny_llava(path: str | Path, spec: TinyLlavaSpec = DEFAULT_SPEC) -> Path:
    """Write a random tiny LLaVA checkpoint (model + processor) to `path` and return it."""
    model, processor = build_llava(spec, build_tokenizer())
    out = Path(path)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
