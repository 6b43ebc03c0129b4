"""What a model family provides to `HookedLVLM`: loading, prompts, images and module paths."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor, nn


class Adapter(ABC):
    """Knows one family of vision-language checkpoints; everything family-specific lives here."""

    #: Hugging Face `config.architectures` names this adapter loads.
    architectures: ClassVar[tuple[str, ...]] = ()
    #: Name of TransformerLens's architecture adapter that builds the `TransformerBridge`.
    bridge_architecture: ClassVar[str] = ""
    #: mmlens multimodal hook names -> the bridge hook they alias.
    hook_aliases: ClassVar[Mapping[str, str]] = {}
    #: Image preprocessing modes this family offers; the first one is the default.
    image_modes: ClassVar[tuple[str, ...]] = ("processor",)

    def __init__(self, hf_model: nn.Module, processor: Any) -> None:
        self.hf_model = hf_model
        self.processor = processor

    @classmethod
    @abstractmethod
    def from_directory(cls, path: Path, *, device: str, dtype: torch.dtype) -> "Adapter":
        """Load model and processor from a local checkpoint directory, offline, from safetensors."""

    @property
    @abstractmethod
    def image_token(self) -> str:
        """The placeholder string that marks where the image goes in a prompt."""

    @property
    @abstractmethod
    def image_token_id(self) -> int:
        """Token id of the image placeholder after expansion (one per image feature)."""

    @property
    @abstractmethod
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a generation."""

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The text tokenizer (a `transformers` tokenizer)."""

    @abstractmethod
    def chat_prompt(self, prompt: str, *, with_image: bool) -> str:
        """Wrap a user prompt in the family's chat template, placing the image token."""

    @abstractmethod
    def prepare_image(self, image: Image.Image, mode: str) -> Image.Image:
        """Apply the family's image-level preprocessing `mode` (e.g. padding) to an RGB image."""

    @abstractmethod
    def encode(self, text: str, image: Image.Image | None) -> dict[str, Tensor]:
        """Tokenize a templated prompt (expanding image tokens) and process the image.

        Returns `input_ids`, `attention_mask` and, with an image, `pixel_values`.
        """

    @abstractmethod
    def decoder_layers(self) -> nn.ModuleList:
        """The language model's list of decoder blocks (as the bridge sees them)."""

    @abstractmethod
    def set_decoder_layers(self, layers: nn.ModuleList) -> None:
        """Replace the language model's list of decoder blocks."""

    @abstractmethod
    def text_config(self) -> Any:
        """The language model's config object (read by the HF forward at run time)."""

    @abstractmethod
    def final_norm(self) -> nn.Module:
        """The original (un-hooked) final norm of the language model."""

    @abstractmethod
    def unembed(self) -> nn.Module:
        """The original (un-hooked) unembedding, residual -> logits."""
