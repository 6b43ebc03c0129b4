"""A tiny LLaVA in the original repository's format (`LlavaLlamaForCausalLM`, `mm_projector`, the
CLIP tower in its own folder), and the same weights in llava-hf format, built in code.

The original format is written as haotian-liu/LLaVA saves it: LLaMA keys under `model.`, the
projector as `model.mm_projector.{0,2}`, a SentencePiece `tokenizer.model` (trained here on the
tiny word list, with LLaMA's byte fallback) without an image token, and a config naming the tower
by hub id. The tower folder is laid out as OpenAI's CLIP checkpoints are (`vision_model.*` keys
beside a text-side `logit_scale`). Needs `sentencepiece` (the `original` extra).
"""

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AddedToken, AutoTokenizer, CLIPImageProcessor

from mmlens.errors import MissingDependencyError
from mmlens.zoo.tiny import DEFAULT_SPEC, WORDS, TinyLlavaSpec, build_llava

#: The hub id the tiny config names for its tower (never in a cache: tests pass the folder).
TOWER_HUB_ID = "openai/clip-vit-tiny-mmlens-test"


@dataclass(frozen=True)
class OriginalCheckpoints:
    """Folders of one tiny model in both formats."""

    original: Path  # LlavaLlamaForCausalLM: language model + projector + tokenizer
    tower: Path  # the CLIP vision tower the original config names
    hf: Path  # the same weights as llava-hf's LlavaForConditionalGeneration


def write_sentencepiece_tokenizer(folder: Path, vocab_size: int = 400, seed: int = 0) -> None:
    """Train a small LLaMA-style SentencePiece BPE model on sentences of the tiny word list and
    write it with LLaMA's tokenizer_config.json, as original LLaVA checkpoints ship theirs."""
    try:
        import sentencepiece
    except ImportError as error:
        raise MissingDependencyError(
            "Building a tiny original-format LLaVA needs sentencepiece: "
            "pip install 'mmlens[original]'."
        ) from error
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(2000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        # LLaMA's normalizer: none (text kept as is), a leading "▁", digits split.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": 2048,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def build_tiny_original_llava(
    root: str | Path, spec: TinyLlavaSpec = DEFAULT_SPEC
) -> OriginalCheckpoints:
    """Write a random tiny LLaVA in the original format, its tower, and its llava-hf twin."""
    root = Path(root)
    folders = OriginalCheckpoints(root / "original", root / "clip-tower", root / "llava-hf")
    write_sentencepiece_tokenizer(folders.original)
    tokenizer = AutoTokenizer.from_pretrained(folders.original)
    vocab_size = len(tokenizer)
    # llava-hf's conversion: `<image>` appended as an added special token (id = old vocab size).
    hf_tokenizer = AutoTokenizer.from_pretrained(folders.original)
    hf_tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)])
    hf_tokenizer.pad_token = hf_tokenizer.unk_token
    model, processor = build_llava(spec, hf_tokenizer)
    with torch.no_grad():  # the image rows the original model does not have
        model.get_input_embeddings().weight[vocab_size:] = 0
        model.lm_head.weight[vocab_size:] = 0
    model.save_pretrained(folders.hf, safe_serialization=True)
    processor.save_pretrained(folders.hf)

    state = model.state_dict()
    original = {}
    for key, value in state.items():
        if key.startswith("model.language_model."):
            original["model." + key.removeprefix("model.language_model.")] = value
        elif key.startswith("model.multi_modal_projector.linear_"):
            index = {"1": "0", "2": "2"}[key.split("linear_")[1][0]]
            original[f"model.mm_projector.{index}.{key.rsplit('.', 1)[1]}"] = value
    original["lm_head.weight"] = state["lm_head.weight"]
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        original[key] = original[key][:vocab_size]
    folders.original.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in original.items()}, folders.original / "model.safetensors"
    )
    text = model.config.text_config
    config = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        "vocab_size": vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "image_aspect_ratio": "pad",
        "mm_hidden_size": model.config.vision_config.hidden_size,
        "mm_patch_merge_type": "flat",
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch"
        if spec.vision_feature_select_strategy == "default"
        else "cls_patch",
        "mm_vision_select_layer": spec.vision_feature_layer,
        "mm_vision_tower": TOWER_HUB_ID,
        "use_mm_proj": True,
    }
    (folders.original / "config.json").write_text(json.dumps(config, indent=2))

    tower = {
        "vision_model." + key.removeprefix("model.vision_tower."): value
        for key, value in state.items()
        if key.startswith("model.vision_tower.")
    }
    tower["logit_scale"] = torch.tensor(2.6592)  # a full CLIPModel's; the converter drops it
    folders.tower.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tower.items()}, folders.tower / "model.safetensors")
    model.config.vision_config.save_pretrained(folders.tower)
    image_processor: CLIPImageProcessor = processor.image_processor
    image_processor.save_pretrained(folders.tower)
    return folders
