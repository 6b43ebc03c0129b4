"""LLaVA-NeXT / LLaVA-1.6 (`LlavaNextForConditionalGeneration`): LLaVA with any-resolution tiles.

The image is cut into tiles of the tower's size on the best grid of `image_grid_pinpoints`, plus
one downscaled overview; every tile goes through the tower and the projector, the grid's features
are unpadded back to the image's aspect ratio, and a learned `image_newline` vector ends each row.
The processor expands `<image>` to exactly that many positions (newlines included), so the image
mask from the input ids covers them all.
"""

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from transformers import LlavaNextForConditionalGeneration, PreTrainedModel

from mmlens.adapters.llava import LlavaAdapter
from mmlens.inputs import ModelInputs


class LlavaNextAdapter(LlavaAdapter):
    """Adapter for `LlavaNextForConditionalGeneration` checkpoints (llava-hf's LLaVA-NeXT)."""

    architectures: ClassVar[tuple[str, ...]] = ("LlavaNextForConditionalGeneration",)
    family: ClassVar[str] = "LLaVA-NeXT / LLaVA-1.6 (llava-hf format, any-resolution tiles)"
    bridge_architecture: ClassVar[str] = "LlavaNextForConditionalGeneration"
    # Same aliases as LLaVA-1.5; here they hold one row per tile (overview first), before the
    # features are unpadded and the newline vectors added: `blocks.0.hook_resid_pre` at the image
    # positions is what enters the language model.
    hook_aliases: ClassVar[dict[str, str]] = dict(LlavaAdapter.hook_aliases)
    #: Tiling replaces LLaVA-1.5's padding: the processor alone prepares the image.
    image_modes: ClassVar[tuple[str, ...]] = ("processor",)
    model_class: ClassVar[type[PreTrainedModel]] = LlavaNextForConditionalGeneration

    def chat_prompt(self, prompt: str, *, with_image: bool) -> str:
        """The checkpoint's own chat template (Mistral, Vicuna and Yi variants differ), or
        LLaVA-1.5's where the processor has none."""
        if getattr(self.processor, "chat_template", None) is None:
            return super().chat_prompt(prompt, with_image=with_image)
        content: list[dict[str, str]] = [{"type": "text", "text": prompt}]
        if with_image and self.image_token not in prompt:
            content.insert(0, {"type": "image"})
        messages = [{"role": "user", "content": content}]
        return str(self.processor.apply_chat_template(messages, add_generation_prompt=True))

    def patch_grid(self, inputs: ModelInputs, n_images: int) -> tuple[int, int] | None:
        """None: the overview tile, then the unpadded grid with a newline token per row."""
        return None

    def stack_pixel_values(self, pixels: Sequence[Tensor]) -> Tensor:
        """Rows with fewer tiles are padded with zero tiles, which the model drops again (it
        counts each image's tiles from `image_sizes`), as the processor pads a batch."""
        most = max(p.shape[1] for p in pixels)
        return torch.cat(
            [torch.nn.functional.pad(p, (0, 0, 0, 0, 0, 0, 0, most - p.shape[1])) for p in pixels]
        )
