"""The shipped `mmlens/shapes` model: loads offline, and does what its model card says."""

import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

import mmlens
from mmlens.zoo import shipped_models
from mmlens.zoo.shapes.evaluate import evaluate
from mmlens.zoo.shapes.scenes import Scene, SceneObject, draw_scene

SCENE = Scene(
    (
        SceneObject("square", "red", "large", "left"),
        SceneObject("diamond", "blue", "small", "right", 5),
    )
)


@pytest.fixture(scope="module")
def shapes():
    return mmlens.load("mmlens/shapes")


def test_weights_are_small_safetensors():
    folder = shipped_models()["mmlens/shapes"]
    weights = list(folder.glob("*.safetensors"))
    assert weights and sum(w.stat().st_size for w in weights) <= 20 * 2**20
    assert not list(folder.glob("*.bin"))


def test_transformers_alone_loads_it_offline():
    folder = shipped_models()["mmlens/shapes"]
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    prompt = "USER: <image>\nhow many objects are there ? ASSISTANT:"
    inputs = processor(images=draw_scene(SCENE), text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    answer = processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert answer.strip() == "two"


def test_mmlens_load_by_name(shapes):
    assert shapes.n_blocks == 8
    caption = shapes.generate(
        draw_scene(SCENE), "Please describe this image in detail.", max_new_tokens=40
    ).text
    # It counts reliably and mostly sees colours; shapes are its weak point (see the card).
    assert caption.startswith("there are two objects")
    assert "red" in caption and "blue" in caption


# Measured on 60 held-out scenes (evaluation is deterministic): count 1.00, colour 0.68, position
# 0.51, shape 0.35, caption objects 0.41; colour hallucination 0.06, co-occurrence 0.64. Each bound
# sits under the measurement and above chance (see MODEL_CARD.md for the 200-scene numbers).
THRESHOLDS = {
    "count": 0.9,
    "colour": 0.5,
    "position": 0.4,
    "shape": 0.25,
    "caption objects": 0.3,
}


@pytest.mark.slow
def test_held_out_accuracy_and_hallucination_rates(shapes):
    result = evaluate(shapes, n=60)
    for kind, accuracy in result.vqa_accuracy.items():
        assert accuracy >= THRESHOLDS[kind], (kind, accuracy)
    assert result.caption_object_accuracy >= THRESHOLDS["caption objects"]
    # The co-occurrence prior: a lone cross brings a circle into most captions.
    assert result.cooccurrence_hallucination >= 0.5
    # The attribute prior shows, but the model mostly sees the triangle's colour.
    assert 0 < result.colour_hallucination < 0.3
