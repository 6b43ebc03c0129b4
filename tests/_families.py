"""Every model family beside llava-hf's LLaVA-1.5, as a tiny random checkpoint loaded through
mmlens beside its Hugging Face reference, and what each multimodal hook should hold there.

Each family's reference is computed from Hugging Face's own modules, not from mmlens.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import (
    Gemma3ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    Qwen2_5_VLForConditionalGeneration,
)

import mmlens
from mmlens.inputs import ModelInputs
from mmlens.model import HookedLVLM
from mmlens.zoo.tiny_gemma3 import build_tiny_gemma3
from mmlens.zoo.tiny_next import build_tiny_llava_next
from mmlens.zoo.tiny_original import build_tiny_original_llava
from mmlens.zoo.tiny_qwen import build_tiny_qwen2_5_vl

FAMILIES = ("llava_original", "llava_next", "qwen2_5_vl", "gemma3")
#: With llava-hf's LLaVA-1.5 (the `checkpoints["gqa"]` fixture's model), every family.
ALL_FAMILIES = ("llava", *FAMILIES)


@dataclass(frozen=True)
class VisionReference:
    """What the multimodal hooks should hold, from Hugging Face's modules."""

    pixels: Tensor  # the tower's input
    vision_out: Tensor  # the tower features the projector reads
    image_embeds: Tensor  # the projector's output
    sequence: Tensor  # [n_img, d_model]: the image features in sequence order, as scattered


@dataclass(frozen=True)
class FamilyCase:
    """One family: the mmlens model and the Hugging Face model with the same weights."""

    name: str
    model: HookedLVLM
    hf: Any
    #: What `mmlens ... --model` takes: the checkpoint folder, or for the original format the
    #: `mmlens convert` arguments (checkpoint, --vision-tower, tower).
    cli_source: tuple[str, ...]

    def load_again(self, **kwargs: Any) -> HookedLVLM:
        """The same checkpoint loaded by `mmlens.load` with other keyword arguments."""
        if "--vision-tower" in self.cli_source:
            kwargs["vision_tower"] = self.cli_source[self.cli_source.index("--vision-tower") + 1]
        return mmlens.load(self.cli_source[0], **kwargs)

    def hf_kwargs(self, inputs: ModelInputs) -> dict[str, Any]:
        """The inputs Hugging Face's own forward and `generate` take for these: Qwen2.5-VL gets
        the processor's modality ids and computes its positions itself."""
        kwargs = inputs.model_kwargs()
        if self.name == "qwen2_5_vl":
            kwargs.pop("position_ids", None)
            kwargs["mm_token_type_ids"] = inputs.image_mask.int()
            self.hf.model.rope_deltas = None
        return kwargs

    def hf_kwargs_with(self, inputs: ModelInputs, new_ids: list[int]) -> dict[str, Any]:
        """HF's keyword arguments for one unpadded prompt followed by `new_ids` (for re-running
        the whole sequence each step, without a KV cache)."""
        kwargs = self.hf_kwargs(inputs)
        extra = torch.tensor([new_ids], dtype=torch.long)
        kwargs["input_ids"] = torch.cat([kwargs["input_ids"], extra], 1)
        kwargs["attention_mask"] = torch.cat([kwargs["attention_mask"], torch.ones_like(extra)], 1)
        for name in ("token_type_ids", "mm_token_type_ids"):
            if name in kwargs:
                zeros = torch.zeros_like(extra).to(kwargs[name].dtype)
                kwargs[name] = torch.cat([kwargs[name], zeros], 1)
        return kwargs

    def vision_reference(self, inputs: ModelInputs) -> VisionReference:
        pixels = inputs.pixel_values
        assert pixels is not None
        inner = self.hf.model
        if self.name == "qwen2_5_vl":
            grid = inputs.image_kwargs["image_grid_thw"]
            out = inner.visual(pixels, grid_thw=grid)
            embeds = inner.visual.merger(out.last_hidden_state)
            return VisionReference(pixels, out.last_hidden_state, embeds, out.pooler_output)
        if self.name == "gemma3":
            vision_out = inner.vision_tower(pixel_values=pixels).last_hidden_state
            embeds = inner.multi_modal_projector(vision_out)
            return VisionReference(pixels, vision_out, embeds, embeds.reshape(-1, embeds.shape[-1]))
        config = self.hf.config
        tiles = pixels[0] if pixels.dim() == 5 else pixels  # one image: no padded tiles
        hidden = inner.vision_tower(tiles, output_hidden_states=True).hidden_states
        selected = hidden[config.vision_feature_layer]
        if config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        embeds = inner.multi_modal_projector(selected)
        if self.name == "llava_next":
            packed = inner.get_image_features(
                pixels,
                inputs.image_kwargs["image_sizes"],
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            ).pooler_output
            sequence = torch.cat(list(packed))
        else:
            sequence = embeds.reshape(-1, embeds.shape[-1])
        return VisionReference(tiles, selected, embeds, sequence)


def build_case(name: str, root: Path, llava: Path | None = None) -> FamilyCase:
    """Build the family's tiny checkpoint under `root` and load it both ways ("llava" loads the
    llava-hf checkpoint folder `llava` instead)."""
    if name == "llava":
        assert llava is not None, "the llava family needs its checkpoint folder"
        model = mmlens.load(llava)
        hf = LlavaForConditionalGeneration.from_pretrained(llava, attn_implementation="eager")
        source = (str(llava),)
    elif name == "llava_original":
        folders = build_tiny_original_llava(root)
        model = mmlens.load(folders.original, vision_tower=folders.tower)
        hf = LlavaForConditionalGeneration.from_pretrained(folders.hf, attn_implementation="eager")
        source = (str(folders.original), "--vision-tower", str(folders.tower))
    elif name == "llava_next":
        path = build_tiny_llava_next(root)
        model = mmlens.load(path)
        hf = LlavaNextForConditionalGeneration.from_pretrained(path, attn_implementation="eager")
        source = (str(path),)
    elif name == "qwen2_5_vl":
        path = build_tiny_qwen2_5_vl(root)
        model = mmlens.load(path)
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, attn_implementation="eager")
        source = (str(path),)
    elif name == "gemma3":
        path = build_tiny_gemma3(root)
        model = mmlens.load(path)
        hf = Gemma3ForConditionalGeneration.from_pretrained(path, attn_implementation="eager")
        source = (str(path),)
    else:
        raise ValueError(name)
    return FamilyCase(name, model, hf.eval(), source)
