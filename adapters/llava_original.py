"""Original LLaVA-1.5 checkpoints (haotian-liu/LLaVA's `LlavaLlamaForCausalLM`, `mm_projector`),
converted on load into the llava-hf layout that `LlavaAdapter` runs.

The original format keeps the LLaMA weights under `model.*`, the projector as
`model.mm_projector.{0,2}` and names the CLIP tower by hub id (`mm_vision_tower`), whose weights it
usually does not hold. The original code splices the image features in at a sentinel id (-200),
so its vocabulary has no image token: conversion appends `<image>` as the last id with all-zero
embedding and unembedding rows (its logit is always exactly 0; the features replace its
embedding). Everything else is copied unchanged, so the converted model computes what the
original does. Preprocessing is the original's: pad to a square of the mean colour (`"pad"`).
"""

from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor
from transformers import (
    AddedToken,
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from mmlens.adapters.base import placed, read_config, require_safetensors
from mmlens.adapters.llava import LlavaAdapter
from mmlens.devices import DeviceMap
from mmlens.errors import CheckpointNotFoundError, ConfigError, UnsupportedModelError

IMAGE_TOKEN = "<image>"
#: What the converter supports, as LLaVA-1.5 was trained; anything else is refused by name.
SUPPORTED_SETTINGS: dict[str, tuple[Any, ...]] = {
    "mm_projector_type": ("mlp2x_gelu",),
    "mm_use_im_start_end": (False, None),
    "mm_patch_merge_type": ("flat", None),
    "mm_vision_select_feature": ("patch", "cls_patch", None),
    "tie_word_embeddings": (False, None),
}
_LLAMA_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "attention_bias",
    "mlp_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


def read_original_config(checkpoint: Path) -> dict[str, Any]:
    """The original checkpoint's config.json, refused with the setting's name if the converter
    does not support it (LLaVA-1.5's layout: 2-layer GELU projector, no image start/end tokens)."""
    config = read_config(checkpoint / "config.json")
    for key, allowed in SUPPORTED_SETTINGS.items():
        if config.get(key) not in allowed:
            raise UnsupportedModelError(
                f"{checkpoint}: {key}={config.get(key)!r} is not supported; mmlens converts "
                f"LLaVA-1.5's layout ({key} in {[a for a in allowed if a is not None]})."
            )
    if not config.get("mm_vision_tower"):
        raise UnsupportedModelError(f"{checkpoint}/config.json names no mm_vision_tower.")
    return config


def find_vision_tower(config: dict[str, Any], given: str | Path | None) -> Path:
    """The local CLIP tower: `given`, else `mm_vision_tower` as a folder or a cached hub id."""
    named = str(given or config["mm_vision_tower"])
    path = Path(named).expanduser()
    if path.is_dir():
        return path
    if given is not None:
        raise CheckpointNotFoundError(f"vision tower {named!r} is not a folder.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(named, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError) as error:
        raise CheckpointNotFoundError(
            f"The checkpoint's vision tower {named!r} is neither a folder nor in the Hugging Face "
            "cache, and mmlens never downloads. Fetch it yourself (`hf download "
            f"{named}`), or pass a local copy: `mmlens.load(path, vision_tower=...)` or "
            "`mmlens convert PATH OUT --vision-tower DIR`."
        ) from error


def safetensors_weights(folder: Path, what: str) -> dict[str, Tensor]:
    """Every tensor in a folder's *.safetensors files (never pickle: *.bin is refused)."""
    weights: dict[str, Tensor] = {}
    for file in require_safetensors(folder, what):
        try:
            weights.update(load_file(file))
        except (SafetensorError, OSError) as error:
            raise CheckpointNotFoundError(f"{file} is damaged ({error}).") from error
    return weights


def tower_weights(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """A CLIP checkpoint's vision-tower weights under llava-hf names (the text half dropped)."""
    found = {}
    for key, value in weights.items():
        if key.startswith("vision_model."):
            key = key.removeprefix("vision_model.")
        elif key.split(".")[0] not in ("embeddings", "pre_layrnorm", "encoder", "post_layernorm"):
            continue  # text_model.*, the projections and logit_scale of a full CLIPModel
        found[f"model.vision_tower.{key}"] = value
    return found


def converted_weights(
    original: dict[str, Tensor], tower: dict[str, Tensor], vocab_size: int
) -> dict[str, Tensor]:
    """The original state dict renamed to llava-hf's, with a zero `<image>` row appended to the
    embedding and the unembedding (so that id `vocab_size` exists and scores exactly 0)."""
    state = dict(tower)
    for key, value in original.items():
        if key.endswith("rotary_emb.inv_freq"):
            continue  # a buffer old LLaMA checkpoints saved; recomputed from the config
        if key.startswith("model.vision_tower.vision_tower."):
            state.update(
                tower_weights({key.removeprefix("model.vision_tower.vision_tower."): value})
            )
        elif key.startswith("model.mm_projector."):
            index = key.split(".")[2]
            layer = {"0": "linear_1", "2": "linear_2"}.get(index)
            if layer is None:
                raise UnsupportedModelError(f"Unexpected projector weight {key!r}.")
            state[
                key.replace(f"model.mm_projector.{index}", f"model.multi_modal_projector.{layer}")
            ] = value
        elif key.startswith("model."):
            state["model.language_model." + key.removeprefix("model.")] = value
        else:
            state[key] = value  # lm_head.weight
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if key not in state:
            raise CheckpointNotFoundError(f"The original checkpoint has no {key!r} weight.")
        matrix = state[key]
        if matrix.shape[0] != vocab_size:
            raise CheckpointNotFoundError(
                f"{key} has {matrix.shape[0]} rows but the config's vocab_size is {vocab_size}."
            )
        state[key] = torch.cat([matrix, matrix.new_zeros(1, matrix.shape[1])])
    return state


def llava_config(original: dict[str, Any], tower: Path) -> LlavaConfig:
    """The llava-hf config of an original checkpoint whose CLIP tower is the folder `tower`."""
    text = LlamaConfig(**{key: original[key] for key in _LLAMA_FIELDS if key in original})
    text.vocab_size = original["vocab_size"] + 1
    if not (tower / "config.json").is_file():  # transformers would fall back to defaults
        raise CheckpointNotFoundError(f"The CLIP tower {tower} has no readable config.json.")
    try:
        vision = CLIPVisionConfig.from_pretrained(tower, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointNotFoundError(
            f"The CLIP tower {tower} has no readable config.json ({error})."
        ) from error
    feature = original.get("mm_vision_select_feature") or "patch"
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=original["vocab_size"],
        projector_hidden_act="gelu",
        vision_feature_layer=original.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if feature == "patch" else "full",
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        architectures=["LlavaForConditionalGeneration"],
        tie_word_embeddings=False,
    )


def llava_processor(checkpoint: Path, tower: Path, config: LlavaConfig) -> LlavaProcessor:
    """The original tokenizer with `<image>` appended, and the tower's CLIP image processor."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        image_processor = CLIPImageProcessor.from_pretrained(tower, local_files_only=True)
    except (OSError, ValueError, ImportError) as error:
        raise CheckpointNotFoundError(
            f"Could not load the tokenizer of {checkpoint} or the image processor "
            f"(preprocessor_config.json) of the tower {tower}: {error} (original LLaVA "
            "tokenizers are SentencePiece files: pip install 'mmlens[original]')"
        ) from error
    if IMAGE_TOKEN in tokenizer.get_vocab():
        raise UnsupportedModelError(
            f"{checkpoint}'s tokenizer already has {IMAGE_TOKEN!r}; is it in llava-hf format?"
        )
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != config.image_token_id:
        raise UnsupportedModelError(
            f"{checkpoint}'s tokenizer has {len(tokenizer) - 1} tokens but the model's vocabulary "
            f"is {config.image_token_id}; they must match to append {IMAGE_TOKEN!r}."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # what LLaVA-1.5's training pads with
    strategy = config.vision_feature_select_strategy
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )


def convert_original(
    checkpoint: Path, vision_tower: str | Path | None = None, dtype: torch.dtype = torch.float32
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """An original LLaVA checkpoint as a llava-hf `LlavaForConditionalGeneration` and processor,
    in memory (no weights are copied twice)."""
    original = read_original_config(checkpoint)
    tower = find_vision_tower(original, vision_tower)
    config = llava_config(original, tower)
    weights = safetensors_weights(checkpoint, "The checkpoint")
    has_tower = any(key.startswith("model.vision_tower.") for key in weights)
    tower_state = {} if has_tower else tower_weights(safetensors_weights(tower, "The CLIP tower"))
    state = converted_weights(weights, tower_state, original["vocab_size"])
    with torch.device("meta"):
        expected = set(LlavaForConditionalGeneration(config).state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointNotFoundError(
            f"{checkpoint} does not have the original LLaVA layout: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}."
        )
    model = LlavaForConditionalGeneration.from_pretrained(
        None, config=config, state_dict=state, dtype=dtype, attn_implementation="eager"
    )
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    return model.eval(), llava_processor(checkpoint, tower, config)


class LlavaOriginalAdapter(LlavaAdapter):
    """Original-format LLaVA-1.5 (`LlavaLlamaForCausalLM`), converted to llava-hf on load."""

    architectures: ClassVar[tuple[str, ...]] = ("LlavaLlamaForCausalLM",)
    family: ClassVar[str] = (
        "LLaVA-1.5, original haotian-liu/LLaVA format (converted on load or by `mmlens convert`)"
    )
    load_options: ClassVar[tuple[str, ...]] = ("vision_tower",)

    @classmethod
    def from_directory(
        cls,
        path: Path,
        *,
        device: str,
        dtype: torch.dtype,
        device_map: DeviceMap | None = None,
        vision_tower: str | Path | None = None,
    ) -> "LlavaOriginalAdapter":
        model, processor = convert_original(path, vision_tower, dtype)
        return cls(placed(model, device, device_map), processor)

    @classmethod
    def convert(cls, path: Path, out: Path, *, vision_tower: str | Path | None = None) -> Path:
        """Write the llava-hf checkpoint (safetensors) that `transformers` alone then loads."""
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"{out} exists and is not an empty folder; choose a new path.")
        model, processor = convert_original(path, vision_tower, torch_dtype(path))
        model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
        return out


def torch_dtype(checkpoint: Path) -> torch.dtype:
    """The dtype the original checkpoint was saved in (float16 for LLaVA-1.5), to convert without
    a rounding step."""
    name = read_config(checkpoint / "config.json").get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32
