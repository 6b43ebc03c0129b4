"""What a model family provides to `HookedLVLM`: loading, prompts, images and module paths."""

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from safetensors import SafetensorError
from torch import Tensor, nn

from mmlens.batching import cat_pixel_values, position_ids
from mmlens.devices import DeviceMap, mapped_device
from mmlens.errors import CheckpointNotFoundError, ConfigError
from mmlens.inputs import ModelInputs, square_grid
from mmlens.weight_files import check_weight_files


class Adapter(ABC):
    """Knows one family of vision-language checkpoints; everything family-specific lives here."""

    #: Hugging Face `config.architectures` names this adapter loads.
    architectures: ClassVar[tuple[str, ...]] = ()
    #: The family in words, for `mmlens models`.
    family: ClassVar[str] = ""
    #: Name of TransformerLens's architecture adapter that builds the `TransformerBridge`.
    bridge_architecture: ClassVar[str] = ""
    #: A TransformerLens `ArchitectureAdapter` class to register under `bridge_architecture`
    #: first, where TransformerLens's own needs adjusting; None uses the registered one.
    bridge_adapter: ClassVar[type | None] = None
    #: mmlens multimodal hook names -> the bridge hook they alias.
    hook_aliases: ClassVar[Mapping[str, str]] = {}
    #: Image preprocessing modes this family offers; the first one is the default.
    image_modes: ClassVar[tuple[str, ...]] = ("processor",)
    #: The family's template for one user turn, around "{prompt}".
    chat_template: ClassVar[str] = "{prompt}"
    #: What goes before the prompt for an image the prompt does not place, around "{image}".
    image_prefix: ClassVar[str] = "{image}"
    #: Keywords of `encode`'s output that are per token ([batch, pos]), not per image.
    token_kwarg_names: ClassVar[tuple[str, ...]] = ()
    #: Keyword options `mmlens.load(..., **options)` passes on to `from_directory`.
    load_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hf_model: nn.Module, processor: Any) -> None:
        self.hf_model = hf_model
        self.processor = processor

    @classmethod
    @abstractmethod
    def from_directory(
        cls,
        path: Path,
        *,
        device: str,
        dtype: torch.dtype,
        device_map: DeviceMap | None = None,
        **options: Any,
    ) -> "Adapter":
        """Load model and processor from a local checkpoint directory, offline, from safetensors,
        onto `device` or spread by `device_map` (`options` are the adapter's `load_options`)."""

    @classmethod
    def convert(cls, path: Path, out: Path, **options: Any) -> Path:
        """Write the checkpoint at `path` to `out` in Hugging Face format, for families stored in
        another layout; the others are already in it."""
        raise ConfigError(
            f"{path} is already a Hugging Face checkpoint ({', '.join(cls.architectures)}); "
            "load it directly, there is nothing to convert."
        )

    @property
    @abstractmethod
    def image_token(self) -> str:
        """The placeholder string that marks where the image goes in a prompt."""

    @property
    @abstractmethod
    def image_token_id(self) -> int:
        """Token id of the image placeholder after expansion (one per image feature)."""

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a generation: the generation config's and the tokenizer's."""
        ids: set[int] = set()
        configured = getattr(self.hf_model.generation_config, "eos_token_id", None)
        if configured is not None:
            ids.update([configured] if isinstance(configured, int) else configured)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return frozenset(ids)

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The text tokenizer (a `transformers` tokenizer)."""

    def chat_prompt(self, prompt: str, *, with_image: bool) -> str:
        """Wrap a user prompt in the family's chat template (`chat_template`), with the image
        token first (`image_prefix`) unless the prompt places it."""
        if with_image and self.image_token not in prompt:
            prompt = self.image_prefix.format(image=self.image_token) + prompt
        return self.chat_template.format(prompt=prompt)

    def prepare_image(self, image: Image.Image, mode: str) -> Image.Image:
        """Apply the family's image-level preprocessing `mode` (e.g. padding) to an RGB image;
        by default there is none (the processor does it all)."""
        return image

    @abstractmethod
    def encode(self, text: str, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        """Tokenize a templated prompt (expanding its image tokens, one per image, in order) and
        process the images (none for text only).

        Returns `input_ids`, `attention_mask` and, with images, `pixel_values` and any other
        tensors the forward also takes (per image, e.g. `image_sizes`, or per token, named in
        `token_kwarg_names`).
        """

    def patch_grid(self, inputs: ModelInputs, n_images: int) -> tuple[int, int] | None:
        """The (rows, columns) grid one row's image tokens form in raster order, or None: one
        image whose tokens are a square grid of patches (after a CLS token, if kept)."""
        return square_grid(int(inputs.image_mask.sum())) if n_images == 1 else None

    def stack_pixel_values(self, pixels: Sequence[Tensor]) -> Tensor:
        """One batch's pixel values from its rows' (the rows with an image)."""
        return cat_pixel_values(pixels)

    def position_ids(self, inputs: ModelInputs) -> Tensor | None:
        """Position ids for the forward: None where Hugging Face's default (0, 1, ...) is right,
        else counted over each row's real tokens (left padding)."""
        if bool(inputs.attention_mask.all()):
            return None
        return position_ids(inputs.attention_mask)

    # Module paths. Every family so far keeps Hugging Face's transformers-5 layout for its
    # language model (`model.language_model` with `layers` and `norm`, and `lm_head`); a family
    # laid out differently overrides these.
    def _language_model(self) -> nn.Module:
        return self.hf_model.model.language_model

    def language_model(self) -> nn.Module:
        """The decoder-only language model (embeddings in, final norm out; no `lm_head`)."""
        return self._language_model()

    def decoder_layers(self) -> nn.ModuleList:
        """The language model's list of decoder blocks (as the bridge sees them)."""
        return self._language_model().layers

    def set_decoder_layers(self, layers: nn.ModuleList) -> None:
        """Replace the language model's list of decoder blocks."""
        self._language_model().layers = layers

    def text_config(self) -> Any:
        """The language model's config object (read by the HF forward at run time)."""
        return self._language_model().config

    def final_norm(self) -> nn.Module:
        """The original (un-hooked) final norm of the language model."""
        return original_module(self._language_model().norm)

    def unembed(self) -> nn.Module:
        """The original (un-hooked) unembedding, residual -> logits."""
        return original_module(self.hf_model.lm_head)


def original_module(module: nn.Module) -> nn.Module:
    """The HF module a TransformerLens bridge component wraps (or the module itself)."""
    return getattr(module, "original_component", None) or module


def require_safetensors(folder: Path, what: str = "The checkpoint") -> list[Path]:
    """The folder's *.safetensors files, or a clear error: mmlens loads safetensors only and
    never unpickles (a folder of pickle *.bin weights is told how to convert them), and damaged
    files or missing shards are named."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        hint = (
            f" It has pickle weights ({', '.join(pickled[:3])}); mmlens never unpickles. "
            "Convert them once where you trust the file (README, 'Model families')."
            if pickled
            else " mmlens loads safetensors only (`save_pretrained(..., safe_serialization=True)`)."
        )
        raise CheckpointNotFoundError(f"{what} {folder} has no *.safetensors weights.{hint}")
    check_weight_files(folder, files)
    return files


def load_hf_model(
    model_class: Any, path: Path, dtype: torch.dtype, device: str, device_map: DeviceMap | None
) -> nn.Module:
    """A `transformers` model from a local folder on `device`, or spread by `device_map` (the
    weights go straight to their devices): offline, safetensors only (mmlens never unpickles),
    no remote code, and the eager attention the bridge's hooks see."""
    require_safetensors(path)
    placement = device_map.from_pretrained_kwargs() if device_map is not None else {}
    try:
        model = model_class.from_pretrained(
            path,
            dtype=dtype,
            local_files_only=True,
            use_safetensors=True,
            attn_implementation="eager",
            **placement,
        )
    except (SafetensorError, OSError) as error:  # what the checks above cannot see
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CheckpointNotFoundError(f"Could not read the weights in {path}: {reason}") from error
    except ValueError as error:
        if device_map is None:
            raise
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(f"{device_map.name} cannot place {path}: {reason}") from None
    return placed(model, device, device_map)


def placed(model: nn.Module, device: str, device_map: DeviceMap | None) -> nn.Module:
    """`model` in eval mode on `device`, or spread by `device_map` (Accelerate dispatches a
    model already in memory, as the original-format converter builds it)."""
    if device_map is None:
        return model.to(device).eval()
    if getattr(model, "hf_device_map", None) is None:
        from accelerate import dispatch_model, infer_auto_device_map

        plan = device_map.map
        if isinstance(plan, str):
            no_split = getattr(model, "_no_split_modules", None) or []
            plan = infer_auto_device_map(
                model, max_memory=device_map.max_memory, no_split_module_classes=no_split
            )
        try:
            model = dispatch_model(model, plan, offload_dir=device_map.offload_folder)
        except (ValueError, KeyError) as error:
            reason = f"{device_map.name} cannot place this model: {error}"
            raise ConfigError(reason) from None
    _check_tied_placement(model)
    return model.eval()


def _check_tied_placement(model: nn.Module) -> None:
    """Tied input and output embeddings share one weight, which Accelerate cannot keep in two
    places (the first forward would fail deep inside it): refuse such a map by name."""
    configs = (model.config, model.config.get_text_config())
    if not any(getattr(config, "tie_word_embeddings", False) for config in configs):
        return
    names = {id(module): name for name, module in model.named_modules()}
    embedding = names[id(model.get_input_embeddings())]
    unembedding = names[id(model.get_output_embeddings())]
    inputs = mapped_device(model.hf_device_map, embedding)
    outputs = mapped_device(model.hf_device_map, unembedding)
    if inputs != outputs:
        raise ConfigError(
            f"device_map puts {embedding} on {inputs!r} and {unembedding} on {outputs!r}, but "
            "this model ties them (one weight); give both the same device."
        )


def read_config(config_file: Path) -> dict[str, Any]:
    """A checkpoint's config.json as a dict, or a clear error naming the damaged file."""
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointNotFoundError(f"{config_file} is not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise CheckpointNotFoundError(f"{config_file} does not hold a JSON object.")
    return config
