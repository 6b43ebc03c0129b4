"""Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`): a windowed ViT at native resolution whose
merger joins 2x2 patches into one token, and a Qwen2 language model with multimodal rotary
positions (mRoPE: temporal, height and width streams).

`Qwen2_5_VLProcessor` cannot be built without torchvision (its video processor needs it), so
this adapter encodes with `Qwen2VLImageProcessorPil` and the tokenizer, as the processor would:
`<|image_pad|>` is repeated once per merged token. Positions are data too: the adapter computes
the four position streams `generate` uses (text positions, then mRoPE's three) with the model's
own `get_rope_index`, and decoding continues every stream by one per token.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor
from transformer_lens.model_bridge.supported_architectures.qwen2_5_vl import (
    Qwen2_5_VLArchitectureAdapter,
)
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mmlens.adapters.base import Adapter, load_hf_model
from mmlens.batching import position_ids
from mmlens.devices import DeviceMap
from mmlens.errors import CheckpointNotFoundError, ImageError, PromptError
from mmlens.inputs import ModelInputs

IMAGE_PAD = "<|image_pad|>"
IMAGE_TOKEN = f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"
#: Qwen2.5-VL's chat template for one user turn, with its default system prompt.
CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
)


class _BridgeAdapter(Qwen2_5_VLArchitectureAdapter):
    """TransformerLens's Qwen2.5-VL component mapping, without its torchvision requirement:
    TransformerLens needs torchvision for the processor it would build; mmlens encodes images
    itself and the model runs without it."""

    required_libraries: list[str] = []


class Qwen2_5_VLProcessing:
    """The tokenizer and the image processor of a Qwen2.5-VL checkpoint."""

    def __init__(self, tokenizer: Any, image_processor: Qwen2VLImageProcessorPil) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor


class Qwen2_5_VLAdapter(Adapter):
    """Adapter for `Qwen2_5_VLForConditionalGeneration` checkpoints (Qwen's own format)."""

    architectures: ClassVar[tuple[str, ...]] = ("Qwen2_5_VLForConditionalGeneration",)
    family: ClassVar[str] = "Qwen2.5-VL (dynamic resolution, multimodal rotary positions)"
    bridge_architecture: ClassVar[str] = "mmlens.Qwen2_5_VLForConditionalGeneration"
    bridge_adapter: ClassVar[type | None] = _BridgeAdapter
    # All three hold every image's patches in one sequence ([n_patch, ...] / [n_token, ...]),
    # hook_vision_out and hook_image_embeds in the tower's window order (the merger's input and
    # output); `blocks.0.hook_resid_pre` at the image positions has them in sequence order.
    hook_aliases: ClassVar[dict[str, str]] = {
        "hook_pixel_values": "vision_encoder.hook_in",
        "hook_vision_out": "vision_projector.hook_in",
        "hook_image_embeds": "vision_projector.hook_out",
    }
    image_modes: ClassVar[tuple[str, ...]] = ("processor",)
    chat_template: ClassVar[str] = CHAT_TEMPLATE

    @classmethod
    def from_directory(
        cls,
        path: Path,
        *,
        device: str,
        dtype: torch.dtype,
        device_map: DeviceMap | None = None,
        **options: Any,
    ) -> "Qwen2_5_VLAdapter":
        model = load_hf_model(Qwen2_5_VLForConditionalGeneration, path, dtype, device, device_map)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, local_files_only=True)
        except Exception as error:  # transformers raises many types here
            raise CheckpointNotFoundError(
                f"Could not load the tokenizer or the image processor (preprocessor_config.json) "
                f"from {path}: {error}"
            ) from error
        return cls(model, Qwen2_5_VLProcessing(tokenizer, image_processor))

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_token(self) -> str:
        return IMAGE_TOKEN

    @property
    def image_token_id(self) -> int:
        return int(self.hf_model.config.image_token_id)

    def encode(self, text: str, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(images):
            raise PromptError(
                f"The prompt holds {IMAGE_PAD!r} {len(pieces) - 1} times for {len(images)} "
                f"image(s); mark each image with {IMAGE_TOKEN!r} (one image needs no mark)."
            )
        processed: dict[str, Tensor] = {}
        if images:
            try:
                processed = dict(
                    self.processor.image_processor(images=list(images), return_tensors="pt")
                )
            except ValueError as error:  # e.g. an aspect ratio beyond 200:1
                sizes = ", ".join(f"{image.width}x{image.height}" for image in images)
                raise ImageError(
                    f"Qwen2.5-VL's image processor refuses the image ({sizes}): {error}. "
                    "Crop or pad it first."
                ) from error
            merge = int(self.hf_model.config.vision_config.spatial_merge_size)
            counts = [int(grid.prod()) // merge**2 for grid in processed["image_grid_thw"]]
            text = pieces[0] + "".join(
                IMAGE_PAD * count + piece for count, piece in zip(counts, pieces[1:], strict=True)
            )
        encoded = self.tokenizer(text, return_tensors="pt")
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            **processed,
        }

    def patch_grid(self, inputs: ModelInputs, n_images: int) -> tuple[int, int] | None:
        """One image: its merged tokens' grid, (height, width) / the merge size."""
        if n_images != 1:
            return None
        _, height, width = inputs.image_kwargs["image_grid_thw"][0].tolist()
        merge = int(self.hf_model.config.vision_config.spatial_merge_size)
        return height // merge, width // merge

    def stack_pixel_values(self, pixels: Sequence[Tensor]) -> Tensor:
        """Every image's patches in one sequence, as the processor batches them."""
        return torch.cat(list(pixels))

    def position_ids(self, inputs: ModelInputs) -> Tensor:
        """[4, batch, pos]: text positions (for the attention mask), then mRoPE's temporal,
        height and width positions, as `generate` builds them."""
        text = position_ids(inputs.attention_mask)
        if inputs.pixel_values is None:
            return text[None].expand(4, -1, -1).clone()
        rope, _ = self.hf_model.model.get_rope_index(
            inputs.input_ids,
            image_grid_thw=inputs.image_kwargs["image_grid_thw"],
            attention_mask=inputs.attention_mask,
            mm_token_type_ids=inputs.image_mask.int(),
        )
        return torch.cat([text[None], rope.to(text.device)])
