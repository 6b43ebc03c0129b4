"""Images in every common form, LLaVA-1.5's pad-to-square preprocessing and the chat template."""

import numpy as np
import pytest
import torch
from PIL import Image

from mmlens.adapters.llava import pad_to_square
from mmlens.inputs import load_image


def test_rgba_grayscale_and_arrays_become_rgb(tmp_path):
    rgba = Image.new("RGBA", (8, 6), (10, 20, 30, 0))
    assert load_image(rgba).mode == "RGB"
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    assert load_image(gray).mode == "RGB" and load_image(gray).size == (8, 6)
    assert load_image(np.full((6, 8, 3), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    path = tmp_path / "g.png"
    Image.fromarray(gray).save(path)
    assert np.array_equal(np.asarray(load_image(path))[..., 0], gray)
    assert np.array_equal(np.asarray(load_image(str(path))), np.asarray(load_image(path)))


def test_pad_to_square_centres_the_image():
    image = Image.new("RGB", (4, 2), (1, 2, 3))
    square = pad_to_square(image, (9, 9, 9))
    assert square.size == (4, 4)
    assert square.getpixel((0, 0)) == (9, 9, 9) and square.getpixel((0, 1)) == (1, 2, 3)
    assert pad_to_square(square, (0, 0, 0)) is square


def test_default_image_mode_pads_with_the_mean_colour(tiny, wide_photo):
    mean = tiny.adapter.processor.image_processor.image_mean
    padded = pad_to_square(Image.fromarray(wide_photo), tuple(int(c * 255) for c in mean))
    expected = tiny.adapter.processor.image_processor(images=padded, return_tensors="pt")
    inputs = tiny.prepare(wide_photo, "hello")
    assert torch.equal(inputs.pixel_values, expected["pixel_values"])
    cropped = tiny.prepare(wide_photo, "hello", image_mode="processor")
    assert not torch.equal(inputs.pixel_values, cropped.pixel_values)


def test_chat_template(tiny, photo):
    assert tiny.prepare(photo, "what is this ?").text == "USER: <image>\nwhat is this ? ASSISTANT:"
    assert tiny.prepare(photo, "what is <image> ?").text == "USER: what is <image> ? ASSISTANT:"
    assert tiny.prepare(None, "hi").text == "USER: hi ASSISTANT:"


def test_unknown_image_mode(tiny, photo):
    from mmlens.errors import ConfigError

    with pytest.raises(ConfigError, match="pad"):
        tiny.prepare(photo, "x", image_mode="stretch")
