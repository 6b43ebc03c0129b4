"""A tiny random LLaVA-NeXT (`LlavaNextForConditionalGeneration`) built in code: any-resolution
tiles on a small grid, the image newline, unpadding, and a chat template of its own."""

from pathlib import Path

import torch
from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)

from mmlens.zoo.tiny import TinyLlavaSpec, build_tokenizer, text_config, vision_config

#: Vicuna-style, as llava-v1.6-vicuna's processor template renders a user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
#: Small any-resolution grids (height, width in pixels) for a 28-pixel tower: 1x2, 2x1, 2x2, 2x3
#: and 3x2 tiles (a square photograph takes 2x2, a wide one 2x3).
GRID_PINPOINTS = ((28, 56), (56, 28), (56, 56), (56, 84), (84, 56))
DEFAULT_NEXT_SPEC = TinyLlavaSpec(seed=4)


def build_tiny_llava_next(path: str | Path, spec: TinyLlavaSpec = DEFAULT_NEXT_SPEC) -> Path:
    """Write a random tiny LLaVA-NeXT checkpoint (model + processor) to `path` and return it."""
    tokenizer = build_tokenizer()
    pinpoints = [list(grid) for grid in GRID_PINPOINTS]
    config = LlavaNextConfig(
        vision_config=vision_config(spec),
        text_config=text_config(spec, tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        image_grid_pinpoints=pinpoints,
        architectures=["LlavaNextForConditionalGeneration"],
    )
    torch.manual_seed(spec.seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():  # HF initialises the newline vector at scale 1/sqrt(d); make it matter
        model.model.image_newline.normal_(0, spec.init_std)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    side = spec.image_size
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        image_token="<image>",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    out = Path(path)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
