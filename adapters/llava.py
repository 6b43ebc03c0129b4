"""LLaVA-1.5 (`LlavaForConditionalGeneration`): CLIP tower + 2-layer projector + LLaMA/Vicuna."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor
from transformers import AutoProcessor, LlavaForConditionalGeneration, PreTrainedModel

from mmlens.adapters.base import Adapter, load_hf_model
from mmlens.devices import DeviceMap
from mmlens.errors import CheckpointNotFoundError

#: LLaVA-1.5's conversation template; the image token goes inside `prompt`, first by default.
CHAT_TEMPLATE = "USER: {prompt} ASSISTANT:"
IMAGE_PREFIX = "{image}\n"


def image_chat(prompt: str, image_token: str = "<image>") -> str:
    """`prompt` in LLaVA-1.5's template with the image first (unless the prompt places it), as
    `LlavaAdapter.chat_prompt` builds it; the shipped models were trained on exactly this."""
    if image_token not in prompt:
        prompt = IMAGE_PREFIX.format(image=image_token) + prompt
    return CHAT_TEMPLATE.format(prompt=prompt)


def pad_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """LLaVA-1.5's `expand2square`: centre the image on a square canvas of `background`."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class LlavaAdapter(Adapter):
    """Adapter for `LlavaForConditionalGeneration` checkpoints in the `llava-hf` format."""

    architectures: ClassVar[tuple[str, ...]] = ("LlavaForConditionalGeneration",)
    family: ClassVar[str] = "LLaVA-1.5 (llava-hf format)"
    bridge_architecture: ClassVar[str] = "LlavaForConditionalGeneration"
    hook_aliases: ClassVar[dict[str, str]] = {
        "hook_pixel_values": "vision_encoder.hook_in",
        # The projector's input is the CLIP layer LLaVA really reads (vision_feature_layer,
        # CLS dropped under the "default" strategy), unlike the bridge's vision_encoder.hook_out.
        "hook_vision_out": "vision_projector.hook_in",
        "hook_image_embeds": "vision_projector.hook_out",
    }
    #: "pad" is LLaVA-1.5's own preprocessing (pad to square with the mean colour, then resize),
    #: used in training and by the paper; "processor" is the HF processor alone (centre crop).
    image_modes: ClassVar[tuple[str, ...]] = ("pad", "processor")
    #: The `transformers` class that loads the checkpoint.
    model_class: ClassVar[type[PreTrainedModel]] = LlavaForConditionalGeneration
    chat_template: ClassVar[str] = CHAT_TEMPLATE
    image_prefix: ClassVar[str] = IMAGE_PREFIX

    @classmethod
    def from_directory(
        cls,
        path: Path,
        *,
        device: str,
        dtype: torch.dtype,
        device_map: DeviceMap | None = None,
        **options: Any,
    ) -> "LlavaAdapter":
        model = load_hf_model(cls.model_class, path, dtype, device, device_map)
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except Exception as error:  # transformers raises many types here
            raise CheckpointNotFoundError(
                f"Could not load the processor (tokenizer + image processor) from {path}: {error}"
            ) from error
        return cls(model, processor)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_token(self) -> str:
        return str(getattr(self.processor, "image_token", "<image>"))

    @property
    def image_token_id(self) -> int:
        return int(self.hf_model.config.image_token_id)

    def prepare_image(self, image: Image.Image, mode: str) -> Image.Image:
        if mode == "pad":
            mean = self.processor.image_processor.image_mean
            return pad_to_square(image, tuple(int(channel * 255) for channel in mean))
        return image

    def encode(self, text: str, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        if not images:
            encoded = self.tokenizer(text, return_tensors="pt")
        else:
            encoded = self.processor(images=list(images), text=text, return_tensors="pt")
        return {key: value for key, value in encoded.items()}
