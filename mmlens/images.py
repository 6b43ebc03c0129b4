"""Images in: a path, a PIL image or a numpy array -> an RGB PIL image, or one clear `ImageError`.

Pixel values are never clipped or wrapped. uint8 arrays are 0..255; other integer arrays must
hold values in 0..255 too; float arrays are read as 0..1 (the matplotlib / scikit-image
convention, which `transformers` also rescales by 255), so a float array holding 0..255 is refused
with the fix rather than guessed at; bool arrays are black and white (as PIL's mode "1"). PIL
images in 16-bit, 32-bit or float modes follow the same rules, where PIL's own RGB conversion
would clip them.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mmlens.errors import ImageError

ImageLike = str | Path | Image.Image | np.ndarray

_WIDE_MODES = ("I", "F")  # PIL modes whose RGB conversion clips: I, I;16, I;16B, ..., F


def _check_shape(array: np.ndarray, what: str) -> None:
    shape = array.shape
    if array.ndim == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        raise ImageError(
            f"{what} has shape {shape}, channels first; images are [height, width, channels]: "
            "pass array.transpose(1, 2, 0)."
        )
    if array.ndim == 4 and shape[0] == 1:
        raise ImageError(f"{what} has shape {shape}, a batch of one; pass array[0].")
    if array.ndim not in (2, 3) or (array.ndim == 3 and shape[-1] not in (1, 3, 4)):
        raise ImageError(
            f"{what} has shape {shape}; an image is [height, width] or "
            "[height, width, 1|3|4 channels]."
        )
    if array.size == 0:
        raise ImageError(f"{what} has shape {shape}: it has no pixels.")


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """The array's values as uint8, by the module's rules, or an error naming the values."""
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.uint8) * 255
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            hint = " (16-bit? divide by 257)" if low >= 0 and high <= 65535 else ""
            raise ImageError(
                f"{what} holds values {low}..{high}; integer images must be 0..255: rescale "
                f"it{hint} and pass uint8. mmlens never clips pixel values."
            )
        return array.astype(np.uint8)
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            bad = array[~finite][0]
            raise ImageError(
                f"{what} holds {bad} at {(~finite).sum()} pixel value(s); replace them "
                "(e.g. np.nan_to_num) before passing it."
            )
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            hint = (
                "; it looks like 0..255: divide by 255, or pass array.astype(np.uint8)"
                if low >= 0 and high <= 255
                else ": rescale it"
            )
            raise ImageError(
                f"{what} holds values {low:g}..{high:g}; float images must be in [0, 1]{hint}. "
                "mmlens never clips pixel values."
            )
        return np.round(array.astype(np.float64) * 255).astype(np.uint8)
    raise ImageError(
        f"{what} has dtype {array.dtype}; pass uint8 (0..255), float (0..1) or bool pixels."
    )


def array_to_image(array: np.ndarray, what: str = "The numpy image") -> Image.Image:
    """A PIL image of a [height, width] or [height, width, 1|3|4] array (see the module rules)."""
    _check_shape(array, what)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(_to_uint8(array, what))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of an image; transparency is composited on white, as `transformers` does."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _pil_to_rgb(image: Image.Image, what: str) -> Image.Image:
    """Read a PIL image's pixels (lazily opened files fail here) and convert them to RGB."""
    try:
        image.load()
    except OSError as error:
        raise ImageError(
            f"{what} could not be read ({error}); the file is damaged or truncated: save or "
            "download it again."
        ) from error
    if 0 in image.size:
        raise ImageError(f"{what} is {image.size[0]}x{image.size[1]}: it has no pixels.")
    if image.mode.split(";")[0] in _WIDE_MODES:
        return array_to_image(np.asarray(image), f"{what} (mode {image.mode})").convert("RGB")
    try:
        return to_rgb(image)
    except ValueError as error:
        raise ImageError(
            f"{what} has PIL mode {image.mode}, which cannot be converted to RGB ({error}); "
            "convert it yourself first."
        ) from error


def _open(path: Path) -> Image.Image:
    """An image file's pixels as RGB: missing, folders, non-images, truncated files and
    decompression bombs are one `ImageError`. PIL only warns (and decodes) between
    MAX_IMAGE_PIXELS and twice that; where a filter makes that warning an error, it is answered
    as the error is."""
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file; pass one image's path.")
    if not path.is_file():
        raise ImageError(f"Image file not found: {path}")
    try:
        with Image.open(path) as opened:
            return _pil_to_rgb(opened, str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            f"{path} is too large to open safely ({error}); resize it, or raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError(f"{path} is not a readable image ({error})") from error


def load_image(image: ImageLike) -> Image.Image:
    """Open a path, PIL image or numpy array as an RGB PIL image, or raise `ImageError`."""
    if isinstance(image, (str, Path)):
        return _open(Path(image))
    if isinstance(image, np.ndarray):
        return to_rgb(array_to_image(image))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, getattr(image, "filename", "") or "The PIL image")
    if isinstance(image, torch.Tensor):
        raise ImageError(
            f"A torch tensor of shape {tuple(image.shape)} is not taken as an image; pass a "
            "numpy array, e.g. tensor.permute(1, 2, 0).cpu().numpy() (channels last, floats "
            "in [0, 1])."
        )
    if isinstance(image, (bytes, bytearray)):
        raise ImageError("The image is bytes; pass a path, or PIL.Image.open(io.BytesIO(data)).")
    raise ImageError(
        f"Unsupported image type {type(image).__name__}; pass a path, a PIL image or a numpy array."
    )
