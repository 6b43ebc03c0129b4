"""How a running method reads its first arguments: mmlens's `(image, prompt)`, TransformerLens's
`(prompt, image=...)`, a prompt alone (a text-only run) or token ids.

The rule, the same for `model(...)`, `run_with_cache`, `run_with_hooks`, `generate` and `trace`:

- token ids first: they hold their prompt (and, from `to_tokens`, their image);
- a str (or list of str) first with `image=` given by keyword: the str is the prompt;
- a str (or list of str) alone, with no prompt: a prompt run without an image, as TransformerLens
  runs a string; a string that names an image file is refused (an image needs a prompt);
- anything else: `(image, prompt)`, as mmlens has always read it.
"""

from pathlib import Path
from typing import Any, Literal, NamedTuple

from torch import Tensor

from mmlens.errors import PromptError

#: File endings read as naming an image (a lone string ending so is not taken as a prompt).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

Style = Literal["image", "text", "tokens"]


class Call(NamedTuple):
    """The image and prompt a call means, and its form: "image" for mmlens's `(image, prompt)`
    (or `inputs=`), "text" for a prompt first, "tokens" for token ids first."""

    image: Any
    prompt: Any
    style: Style


def read_call(method: str, input: Any, prompt: Any, image: Any) -> Call:
    """The `Call` that `method(input, prompt, image=image)` means (see the module docstring)."""
    if isinstance(input, Tensor):
        if image is not None:
            raise PromptError(
                f"{method}: token ids already hold their prompt and image; pass them alone "
                "(make them with model.to_tokens(prompt, image=...))."
            )
        return Call(input, prompt, "tokens")
    if image is not None:
        if input is None:
            return Call(image, prompt, "image")
        if not _is_text(input):
            raise PromptError(
                f"{method} got two images: {_short(input)} first and image=...; pass the prompt "
                "first with image=..., or (image, prompt) without image=."
            )
        if prompt is not None:
            raise PromptError(
                f"{method} got two prompts: {_short(input)} first and prompt={_short(prompt)}; "
                "pass one."
            )
        return Call(image, input, "text")
    if prompt is None and _is_text(input):
        for text in [input] if isinstance(input, str) else input:
            _refuse_image_path(method, text)
        return Call(None, input, "text")
    return Call(input, prompt, "image")


def _is_text(value: object) -> bool:
    """A prompt, or a non-empty list of prompts."""
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def names_image_file(text: str) -> bool:
    """Whether a lone string reads as an image path: an image file ending and either no
    whitespace (a path, even one that does not exist yet) or an existing file."""
    if not text.lower().endswith(IMAGE_SUFFIXES) or "\n" in text:
        return False
    return not any(c.isspace() for c in text) or Path(text).is_file()


def _refuse_image_path(method: str, text: str) -> None:
    if names_image_file(text):
        raise PromptError(
            f"{method}({text!r}) has only an image path: a string alone is a prompt (run without "
            f"an image, as in TransformerLens). Pass a prompt with it: {method}({text!r}, "
            f"'describe it'), or {method}('describe it', image={text!r})."
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
