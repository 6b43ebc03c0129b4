"""Model inputs from images and prompts (or token ids), checked against the model's context."""

import dataclasses
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
from torch import Tensor

from mmlens.adapters.base import Adapter
from mmlens.batching import batch_inputs
from mmlens.call_forms import read_call
from mmlens.errors import ConfigError, ImageError, PromptError, TokenError
from mmlens.inputs import ImageLike, ModelInputs, load_image
from mmlens.tl_arguments import check_padding_side
from mmlens.token_text import token_texts
from mmlens.tokens import ImageTokens, text_inputs

# One image (or None, or a list of images for one prompt that marks each) and a prompt, or one
# of those per batch row.
RowImages = ImageLike | None | list[ImageLike]
Images = RowImages | list[RowImages]
Prompts = str | list[str]


def check_prompts(prompt: object) -> None:
    """Refuse a prompt that is not text (a string, or a list of strings for a batch)."""
    if isinstance(prompt, str):
        return
    if isinstance(prompt, list):
        for index, row in enumerate(prompt):
            if not isinstance(row, str):
                raise PromptError(
                    f"prompt[{index}] is {_describe(row)}; every prompt of a batch must be a str."
                )
        return
    if prompt is None:
        raise PromptError("No prompt (prompt=None); pass a str (or a list of str for a batch).")
    if isinstance(prompt, (bytes, bytearray)):
        raise PromptError(f"The prompt is bytes ({prompt[:40]!r}); decode it: prompt.decode().")
    if isinstance(prompt, Tensor):
        raise PromptError(
            "The prompt is a tensor; pass token ids alone, as the first argument: "
            "model.generate(tokens)."
        )
    if isinstance(prompt, tuple):
        raise PromptError("The prompt is a tuple; pass a list of strings for a batch.")
    raise PromptError(f"The prompt is {_describe(prompt)}; pass a str (or a list of str).")


def check_left_padding(padding_side: str | None, inputs: ModelInputs) -> None:
    """Refuse TransformerLens's `padding_side="right"` for a batch that needs padding."""
    if padding_side == "right" and not bool(inputs.attention_mask.all()):
        raise ConfigError(
            "padding_side='right': mmlens pads batches of prompts on the left (so each row ends "
            "at the last position); leave padding_side as None or 'left'."
        )


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


class InputPreparation:
    """`prepare` and its checks; mixed into `HookedLVLM`."""

    adapter: Adapter
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    def prepare(
        self,
        image: Images,
        prompt: Prompts,
        *,
        image_mode: str | None = None,
        chat_template: bool | None = None,
        prepend_bos: bool | None = None,
        answer_start: str = "",
    ) -> ModelInputs:
        """Build model inputs: chat template, pixel values and the image-token mask.

        Lists of images and prompts (one image or None per prompt) give one left-padded batch
        whose rows carry their own image masks and positions. A list of images with one prompt
        (or as one batch row's entry) feeds several images to that prompt, which marks where
        each goes with the family's image token.

        Without an image token in `prompt`, the template puts the image first (LLaVA-1.5:
        `USER: <image>\\n{prompt} ASSISTANT:`). `image_mode` defaults to the adapter's first
        mode (for LLaVA, "pad": pad to a square of the mean colour, as LLaVA-1.5 was trained).
        An empty prompt is allowed (the template and image still make tokens).

        `prepend_bos` (TransformerLens's): None does what the family's tokenizer does (LLaVA's
        adds BOS, Qwen's has none), True puts BOS first, False leaves it out. `chat_template`
        defaults to True, except with `prepend_bos=False`: as in TransformerLens, that asks for
        the text as given (a piece to append, such as an answer, or text already in the chat
        format), so neither the template nor BOS is added. `answer_start` is text the model is
        taken to have said already, appended after the template (e.g. " a small green", to
        study the position that predicts the next word of a caption).
        """
        check_prompts(prompt)
        if chat_template is None:
            chat_template = prepend_bos is not False
        if isinstance(prompt, list):
            images = image if isinstance(image, list) else [image] * len(prompt)
            if len(images) != len(prompt):
                raise ConfigError(
                    f"{len(images)} images for {len(prompt)} prompts: give one image (or None) "
                    "per prompt."
                )
            rows = [
                self.prepare(
                    i,
                    p,
                    image_mode=image_mode,
                    chat_template=chat_template,
                    prepend_bos=prepend_bos,
                    answer_start=answer_start,
                )
                for i, p in zip(images, prompt, strict=True)
            ]
            return batch_inputs(
                rows,
                self._pad_token_id(),
                stack_pixels=self.adapter.stack_pixel_values,
                positions=self.adapter.position_ids,
            )
        adapter = self.adapter
        mode = image_mode or adapter.image_modes[0]
        if mode not in adapter.image_modes:
            raise ConfigError(f"image_mode={mode!r}; choose one of {adapter.image_modes}.")
        images = [] if image is None else list(image) if isinstance(image, list) else [image]
        if any(item is None for item in images):
            raise ConfigError("A prompt's list of images holds None; pass images only.")
        token = adapter.image_token
        marks = prompt.count(token)
        if not images and marks:
            raise PromptError(
                f"The prompt contains {token!r} but no image was given; "
                "pass an image or remove the token."
            )
        if images and marks != len(images) and not (marks == 0 and len(images) == 1):
            raise PromptError(
                f"The prompt contains the image token {token!r} {marks} times for "
                f"{len(images)} image(s): mark each image once (one image needs no mark: the "
                "template adds it)."
            )
        text = adapter.chat_prompt(prompt, with_image=bool(images)) if chat_template else prompt
        if not isinstance(answer_start, str) or token in answer_start:
            raise PromptError(f"answer_start={answer_start!r}: give text without image tokens.")
        text += answer_start
        if text.count(token) != len(images):
            raise PromptError(
                f"The prompt has {text.count(token)} {token!r} tokens for {len(images)} image(s)"
                + ("." if chat_template else "; without the chat template it must place each.")
            )
        pils = [adapter.prepare_image(load_image(item), mode) for item in images]
        encoded = self._bos_applied(dict(adapter.encode(text, pils)), prepend_bos)
        input_ids = encoded.pop("input_ids")
        if input_ids.shape[-1] == 0:
            raise PromptError(
                f"The prompt {prompt!r} gives no tokens (no image, no chat template, no BOS); "
                "pass some text."
            )
        attention_mask = encoded.pop("attention_mask", torch.ones_like(input_ids))
        pixel_values = encoded.pop("pixel_values", None)
        extras = encoded if pixel_values is not None else {}
        inputs = ModelInputs(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_mask=input_ids == adapter.image_token_id,
            text=text,
            image_kwargs={
                key: value for key, value in extras.items() if key not in adapter.token_kwarg_names
            },
            token_kwargs={
                key: value for key, value in extras.items() if key in adapter.token_kwarg_names
            },
        )
        inputs = dataclasses.replace(
            inputs,
            position_ids=adapter.position_ids(inputs),
            patch_grids=(adapter.patch_grid(inputs, len(images)),),
        )
        return inputs.to(self.device, self.dtype)

    def _bos_applied(
        self, encoded: dict[str, Tensor], prepend_bos: bool | None
    ) -> dict[str, Tensor]:
        """The tokenizer's output with BOS first (`prepend_bos=True`) or without a leading BOS
        (False); per-token tensors follow the ids (an added BOS is text: mask 1, type 0)."""
        if prepend_bos is None:
            return encoded
        ids = encoded["input_ids"]
        bos = self.tokenizer.bos_token_id
        starts = bos is not None and ids.shape[-1] > 0 and int(ids[0, 0]) == bos
        if prepend_bos == starts:
            return encoded
        if bos is None:
            raise ConfigError(
                f"prepend_bos=True, but this tokenizer ({type(self.tokenizer).__name__}) has no "
                "BOS token; leave prepend_bos as None."
            )
        per_token = {"input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"}
        per_token |= set(self.adapter.token_kwarg_names)
        changed = dict(encoded)
        for key in per_token & encoded.keys():
            value = encoded[key]
            if value.shape != ids.shape:
                continue
            if not prepend_bos:
                changed[key] = value[:, 1:]
            else:
                first = bos if key == "input_ids" else int(key == "attention_mask")
                changed[key] = torch.cat([torch.full_like(value[:, :1], first), value], dim=1)
        return changed

    def _called_inputs(
        self,
        method: str,
        input: Images | Tensor,
        prompt: Prompts | None,
        image: Images,
        inputs: ModelInputs | None,
        max_new_tokens: int = 0,
        **tokenizing: Any,
    ) -> ModelInputs:
        """`_inputs` for a running method's `(input, prompt, image=)`, read as
        `call_forms.read_call` says."""
        call = read_call(method, input, prompt, image)
        return self._inputs(call.image, call.prompt, inputs, max_new_tokens, **tokenizing)

    def _inputs(
        self,
        image: Images | Tensor,
        prompt: Prompts | None,
        inputs: ModelInputs | None,
        max_new_tokens: int = 0,
        *,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        attention_mask: Tensor | None = None,
    ) -> ModelInputs:
        """Prepared inputs (given, carried by tokens, or built), checked to fit the context.

        TransformerLens's `prepend_bos` and `padding_side` apply to prompts (ignored for token
        ids, as there); `attention_mask` to plain token ids only (prompts and tokens from
        `to_tokens` carry their own)."""
        check_padding_side(padding_side)
        if inputs is not None and (image is not None or prompt is not None):
            raise PromptError(
                "Pass prepared `inputs` alone: they already hold the prompt and image."
            )
        if attention_mask is not None and not (
            isinstance(image, Tensor) and not isinstance(image, ImageTokens)
        ):
            raise ConfigError(
                "attention_mask= is for plain token ids; prompts, prepared inputs and tokens from "
                "to_tokens carry their own."
            )
        image_tensor = isinstance(image, Tensor) and image.is_floating_point()
        if image_tensor and (prompt is not None or image.dim() == 3):  # an image, not token ids
            raise ImageError(
                f"A float tensor of shape {tuple(image.shape)} is neither token ids nor an image "
                "mmlens takes; pass an image as a path, PIL image or numpy array (e.g. "
                "tensor.permute(1, 2, 0).cpu().numpy()), or integer token ids alone."
            )
        if isinstance(image, Tensor):  # token ids in TransformerLens's first argument
            if prompt is not None or inputs is not None:
                raise PromptError("Pass token ids alone: they already hold the prompt and image.")
            if isinstance(image, ImageTokens):
                inputs = image.inputs
            else:
                inputs = text_inputs(image, attention_mask)
                if attention_mask is not None:  # padded rows: positions count real tokens
                    positions = self.adapter.position_ids(inputs)
                    inputs = dataclasses.replace(inputs, position_ids=positions)
            ids = inputs.input_ids
            if ids.shape[-1] == 0:
                raise PromptError(f"Token ids of shape {tuple(ids.shape)} hold no tokens.")
            vocabulary = int(self.adapter.unembed().weight.shape[0])
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary):
                raise TokenError(
                    f"Token ids range {int(ids.min())}..{int(ids.max())}; the vocabulary is "
                    f"0..{vocabulary - 1}."
                )
            inputs = inputs.to(self.device, self.dtype)
        if inputs is None:
            if prompt is None:
                raise PromptError(
                    "prompt=None: pass a prompt (and usually an image), or prepared `inputs`."
                )
            inputs = self.prepare(image, prompt, prepend_bos=prepend_bos)
            check_left_padding(padding_side, inputs)
        self._check_context(inputs, max_new_tokens)
        return inputs

    def _pad_token_id(self) -> int:
        """The id left padding uses (any id works: padding is masked out and never read)."""
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        return int(pad if pad is not None else 0)

    def _check_context(self, inputs: ModelInputs, max_new_tokens: int) -> None:
        """Refuse a generation that would run past the language model's context length."""
        limit = getattr(self.adapter.text_config(), "max_position_embeddings", None)
        length = int(inputs.input_ids.shape[1])
        if limit is not None and length + max_new_tokens > limit:
            raise PromptError(
                f"The prompt is {length} tokens (image included) and max_new_tokens="
                f"{max_new_tokens}: {length + max_new_tokens} is more than the model's context of "
                f"{limit} tokens; shorten the prompt or lower max_new_tokens."
            )

    def to_single_token(self, word: str) -> int:
        """Token id of `word`, which must be exactly one token (no BOS) of the vocabulary."""
        if not isinstance(word, str):
            raise TokenError(f"Rival {_describe(word)} is not a word; pass a str or a token id.")
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            pieces = token_texts(self.tokenizer, ids)
            raise TokenError(
                f"Rival {word!r} is not a single token: it splits into {pieces}. "
                "Pass a word that is one token (try a leading space) or a token id."
            )
        unknown = self.tokenizer.unk_token
        if ids[0] == self.tokenizer.unk_token_id and word != unknown:
            raise TokenError(
                f"Rival {word!r} is not in the vocabulary (it becomes {unknown!r}); pass a word "
                "the tokenizer knows, or a token id."
            )
        return int(ids[0])

    def rival_token_ids(self, rivals: Sequence[str | int] | None) -> list[int]:
        """Token ids of `rivals` (single-token words or ids), each checked."""
        if isinstance(rivals, (str, bytes)):
            raise TokenError(f"rivals={rivals!r} is one string; pass a list: rivals=[{rivals!r}].")
        vocabulary = int(self.adapter.unembed().weight.shape[0])
        found = []
        for rival in rivals or ():
            if isinstance(rival, bool) or not isinstance(rival, Integral):
                found.append(self.to_single_token(rival))  # type: ignore[arg-type]
            elif 0 <= rival < vocabulary:
                found.append(int(rival))
            else:
                raise TokenError(
                    f"Rival token id {rival} is outside the vocabulary 0..{vocabulary - 1}."
                )
        return found
