"""A tiny random Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`) built in code: window and
full-attention vision blocks, the 2x2 merger, dynamic resolution and multimodal rotary positions,
with Qwen's special tokens in a word-level tokenizer."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mmlens.zoo.tiny import WORDS

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
)
_TEMPLATE_WORDS = ("system", "user", "assistant", "You", "helpful")
PATCH, MERGE = 7, 2


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer with Qwen's special tokens; like Qwen's, it adds no BOS."""
    vocab = {
        token: index
        for index, token in enumerate(
            dict.fromkeys((*QWEN_SPECIALS, "<unk>", *WORDS, *_TEMPLATE_WORDS))
        )
    }
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )
    fast.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS)})
    return fast


def build_tiny_qwen2_5_vl(path: str | Path, seed: int = 5) -> Path:
    """Write a random tiny Qwen2.5-VL checkpoint (model, tokenizer, image processor) to `path`.

    Images are resized to between 2x2 and 4x4 merged tokens (of 14x14 pixels) and the tower's
    windows are 2x2 merged tokens, so a photograph spans several windows.
    """
    tokenizer = build_qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
            },
            "initializer_range": 0.15,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
        },
        vision_config={
            "depth": 3,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "out_hidden_size": 64,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": 2,
            "window_size": 2 * PATCH * MERGE,
            "fullatt_block_indexes": [1],
            "initializer_range": 0.15,
        },
        image_token_id=ids("<|image_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    unit = PATCH * MERGE
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=2,
        min_pixels=(2 * unit) ** 2,
        max_pixels=(4 * unit) ** 2,
    )
    out = Path(path)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out
