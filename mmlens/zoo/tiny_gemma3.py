"""A tiny random Gemma 3 (`Gemma3ForConditionalGeneration`) built in code: a SigLIP tower pooled
to 4 soft tokens, sliding-window and global layers (a window shorter than the prompt), QK norms,
scaled tied embeddings, and Gemma's image markers in a word-level tokenizer."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from mmlens.zoo.tiny import WORDS

GEMMA_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
_TEMPLATE_WORDS = ("user", "model")
IMAGE_SIZE, PATCH, SOFT_TOKENS = 28, 7, 4


def build_gemma_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer with Gemma's special tokens; like Gemma's, it prepends `<bos>`."""
    vocab = {
        token: index
        for index, token in enumerate(dict.fromkeys((*GEMMA_SPECIALS, *WORDS, *_TEMPLATE_WORDS)))
    }
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    fast.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    return fast


def build_tiny_gemma3(path: str | Path, seed: int = 6) -> Path:
    """Write a random tiny Gemma 3 checkpoint (model + processor) to `path` and return it."""
    tokenizer = build_gemma_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": 2048,
            "sliding_window": 8,
            "layer_types": [
                "sliding_attention",
                "full_attention",
                "sliding_attention",
                "full_attention",
            ],
            "initializer_range": 0.15,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
        },
        mm_tokens_per_image=SOFT_TOKENS,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        architectures=["Gemma3ForConditionalGeneration"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Gemma's norms start at scale 1 + 0 and its embeddings are scaled up by sqrt(d), so a
        # random model would mostly copy its last token through the tied unembedding; random
        # norm scales let the blocks matter, as trained ones do.
        for name, parameter in model.model.language_model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.normal_(3.0, 1.0)
        # HF initialises the projector's weight to zeros: the image would reach the language
        # model as zeros, and no test could see what happens to it.
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.3)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, ids("<end_of_turn>")]
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=tokenizer,
        image_seq_length=SOFT_TOKENS,
    )
    out = Path(path)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
