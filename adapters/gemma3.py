"""Gemma 3 (`Gemma3ForConditionalGeneration`): a SigLIP tower whose patches are average-pooled to
a fixed number of soft tokens (256 for the released models), a Gemma 3 language model with
interleaved sliding-window and global attention, scaled and tied embeddings.

The prompt marks the image with `<start_of_image>`; the processor expands it to
`\\n\\n<start_of_image>` + one `<image_soft_token>` per feature + `<end_of_image>\\n\\n`, so the
image positions are the soft tokens. During the prefill the image tokens attend to each other
in both directions; the forward learns where they are from `token_type_ids`, which mmlens
carries with the inputs.
"""

from typing import ClassVar

from torch import nn
from transformers import Gemma3ForConditionalGeneration, PreTrainedModel

from mmlens.adapters.base import original_module
from mmlens.adapters.llava import LlavaAdapter

#: Gemma's chat format for one user turn (the tokenizer adds `<bos>`).
CHAT_TEMPLATE = "<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n"


class Gemma3Adapter(LlavaAdapter):
    """Adapter for `Gemma3ForConditionalGeneration` checkpoints (Google's Gemma 3, 4B and up)."""

    architectures: ClassVar[tuple[str, ...]] = ("Gemma3ForConditionalGeneration",)
    family: ClassVar[str] = "Gemma 3 (SigLIP + pooled soft tokens, sliding-window attention)"
    bridge_architecture: ClassVar[str] = "Gemma3ForConditionalGeneration"
    # hook_vision_out: the SigLIP tower's last layer (post-norm) for every patch, which the
    # projector pools; hook_image_embeds: the pooled, projected soft tokens.
    hook_aliases: ClassVar[dict[str, str]] = dict(LlavaAdapter.hook_aliases)
    image_modes: ClassVar[tuple[str, ...]] = ("processor",)
    model_class: ClassVar[type[PreTrainedModel]] = Gemma3ForConditionalGeneration
    token_kwarg_names: ClassVar[tuple[str, ...]] = ("token_type_ids",)
    chat_template: ClassVar[str] = CHAT_TEMPLATE
    image_prefix: ClassVar[str] = "{image}"

    @property
    def image_token(self) -> str:
        return str(self.processor.boi_token)

    def unembed(self) -> nn.Module:
        # No final-logit soft-capping even when the text config sets one:
        # `Gemma3ForConditionalGeneration` never applies it (only the text-only causal LM does),
        # and the lens follows what the model computes.
        return original_module(self.hf_model.lm_head)
