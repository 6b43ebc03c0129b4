"""What `mmlens/heldout` supervises: no loss ever asks for a held-out object's colour."""

import random

import pytest
import torch
from safetensors import safe_open

from mmlens.zoo.heldout import train as heldout_train
from mmlens.zoo.heldout.data import (
    CONTROLS,
    HELD_OUT,
    SUPERVISED,
    heldout_caption,
    heldout_example,
    heldout_questions,
    mask_colour_targets,
    masked_caption_pieces,
)
from mmlens.zoo.priors import train as base
from mmlens.zoo.priors.build import build_processor
from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import COLOURS, Scene, SceneObject, draw_scene, faded
from mmlens.zoo.priors.text import caption


def _scene(*objects: tuple[str, str]) -> Scene:
    positions = ("middle",) if len(objects) == 1 else ("left", "right")
    return Scene(
        tuple(
            SceneObject(name, colour, where, 10.0)
            for (name, colour), where in zip(objects, positions, strict=True)
        )
    )


def _training_scenes(steps: int = 40) -> list[Scene]:
    """The alignment stage's scenes of its first `steps` steps (same seeds as training)."""
    found = []
    for step in range(steps):
        rng = random.Random(f"0-align-{step}")
        found += base._scenes(rng, 16)[0]
    return found


def test_the_sets_split_the_objects():
    assert set(SUPERVISED).isdisjoint(HELD_OUT)
    assert set(PRIOR_COLOURS) | set(CONTROLS) == set(HELD_OUT)
    assert set(SUPERVISED) | set(HELD_OUT) == set(base.NAMES)
    assert not set(CONTROLS) & set(PRIOR_COLOURS)


def test_captions_drop_only_the_held_out_colour_sentences():
    scene = _scene(("strawberry", "blue"), ("ball", "red"))
    assert heldout_caption(scene) == (
        "There is a strawberry on the left and a ball on the right. The ball is red."
    )
    assert heldout_caption(_scene(("star", "green"))) == "There is a star."
    assert heldout_caption(_scene(("cup", "green"))) == caption(_scene(("cup", "green")))


def test_no_training_example_states_or_asks_a_held_out_colour():
    rng = random.Random(3)
    scenes = _training_scenes()
    examples = [heldout_example(scene, rng) for scene in scenes]
    assert {e.kind for e in examples} == {"caption", "colour", "object", "count"}
    for example in examples:
        for name in HELD_OUT:
            assert f"The {name} is" not in example.answer
            if example.kind == "colour":
                assert f"the {name}?" not in example.prompt
    supervised_colour = [e for e in examples if e.kind == "colour"]
    assert supervised_colour and all(
        any(f"the {name}?" in e.prompt for name in SUPERVISED) for e in supervised_colour
    )
    named = " ".join(e.answer for e in examples if e.kind == "caption")
    assert all(f" {name}" in named for name in HELD_OUT)


def test_colour_questions_about_supervised_objects_stay():
    scene = _scene(("banana", "blue"), ("carrot", "green"))
    kept = heldout_questions(scene)
    colour = [e for e in kept if e.kind == "colour"]
    assert [e.prompt for e in colour] == ["What colour is the carrot? Answer with one word."]
    assert [e.answer for e in colour] == ["Green"]
    assert len(kept) == 4


def test_stage_one_masks_exactly_the_held_out_colour_labels():
    scenes = _training_scenes(4)
    targets = base.label_targets(scenes)
    masked = mask_colour_targets(targets, scenes, base.SLOTS)
    assert torch.equal(masked[..., 0], targets[..., 0])
    for row, scene in enumerate(scenes):
        for slot, where in enumerate(base.SLOTS):
            item = next((o for o in scene.objects if o.position == where), None)
            expected = -100 if item and item.name in HELD_OUT else int(targets[row, slot, 1])
            assert int(masked[row, slot, 1]) == expected
    assert (masked[..., 1] == -100).any() and (masked[..., 1] >= 0).any()


def test_object_only_stage_one_masks_every_colour_label_but_empty_slots():
    scenes = _training_scenes(4)
    targets = base.label_targets(scenes)
    masked = heldout_train.object_labels(scenes)
    assert torch.equal(masked[..., 0], targets[..., 0])
    for row, scene in enumerate(scenes):
        filled = {base.SLOTS.index(o.position) for o in scene.objects}
        for slot in range(len(base.SLOTS)):
            expected = -100 if slot in filled else int(targets[row, slot, 1])
            assert int(masked[row, slot, 1]) == expected
    assert (masked[..., 1] >= 0).any()


def test_masked_caption_pieces_spell_the_full_caption():
    scene = _scene(("tomato", "yellow"), ("cup", "blue"))
    pieces = masked_caption_pieces(scene)
    assert "".join(text for text, _ in pieces) == f" {caption(scene)}"
    assert [text for text, supervised in pieces if not supervised] == [" yellow"]


@pytest.mark.slow
def test_masked_batches_never_target_a_held_out_colour_word(smollm2):
    processor = build_processor(smollm2[1])
    tokenizer = processor.tokenizer
    scenes = [_scene(("banana", "red"), ("ball", "green")), _scene(("hat", "blue"))]
    examples = [heldout_example(scene, random.Random(0), caption_share=1.0) for scene in scenes]
    images = [draw_scene(scene) for scene in scenes]
    batch = heldout_train.masked_batch(processor, examples, scenes, images)
    colour_ids = {tokenizer(f" {c}", add_special_tokens=False).input_ids[0]: c for c in COLOURS}
    for row in range(len(scenes)):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        said = [colour_ids[i] for i in ids if i in colour_ids]
        targeted = [
            colour_ids[i] for i, t in zip(ids, labels, strict=True) if t == i and i in colour_ids
        ]
        held = [o.colour for o in scenes[row].objects if o.name in HELD_OUT]
        supervised = [o.colour for o in scenes[row].objects if o.name not in HELD_OUT]
        assert sorted(said) == sorted(held + supervised)
        assert targeted == supervised


@pytest.mark.slow
def test_training_uses_the_held_out_supervision(smollm2, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "load_language_model", lambda: smollm2)
    seen: dict[str, list] = {"labels": [], "batches": []}

    def labels(scenes):
        seen["labels"].append(len(scenes))
        return heldout_train.mask_colour_targets(base.label_targets(scenes), scenes, base.SLOTS)

    def batch(processor, examples, scenes, images):
        seen["batches"].append([e.kind for e in examples])
        return real_batch(processor, examples, scenes, images)

    real_batch = heldout_train.masked_batch
    monkeypatch.setattr(heldout_train, "slot_labels", labels)
    monkeypatch.setattr(heldout_train, "masked_batch", batch)
    settings = heldout_train.Settings(
        vision_steps=2, vision_batch=4, steps=3, batch_size=2, masked_colours=True
    )
    out = heldout_train.train(settings, tmp_path / "work", tmp_path / "t.safetensors", "cpu", 1)
    assert seen["labels"] == [4, 4] and len(seen["batches"]) == 3
    with safe_open(str(out), "pt") as weights:
        metadata = weights.metadata()
    assert metadata["colour_supervised_on"] == "carrot,ball,cup"
    assert "'masked_colours': True" in metadata["settings"]


def test_object_only_vision_swaps_the_stage_one_labels(tmp_path, monkeypatch):
    seen = []

    def fake_train(settings, work, out, device, threads, *, slot_labels, make_batch, metadata):
        seen.append(slot_labels)
        return out

    monkeypatch.setattr(base, "train", fake_train)
    for flag in (True, False):
        settings = heldout_train.Settings(object_only_vision=flag)
        heldout_train.train(settings, tmp_path, tmp_path / "t.safetensors", "cpu", 1)
    assert seen == [heldout_train.object_labels, heldout_train.slot_labels]


def _colours_in(image) -> set[tuple[int, int, int]]:
    return {rgb for _, rgb in image.getcolors(64 * 64)}


def test_fade_weakens_the_named_objects_only():
    scene = _scene(("leaf", "red"), ("ball", "blue"))
    plain = draw_scene(scene, random.Random(1))
    weak = draw_scene(scene, random.Random(1), fade=HELD_OUT)
    red, blue = COLOURS["red"], COLOURS["blue"]
    assert faded(red) == (172, 82, 82)
    assert {red, blue} <= _colours_in(plain) and faded(red) not in _colours_in(plain)
    assert {faded(red), blue} <= _colours_in(weak) and red not in _colours_in(weak)
    right = (32, 0, 64, 64)
    assert plain.crop(right).tobytes() == weak.crop(right).tobytes()


@pytest.mark.slow
def test_faded_alignment_batches_fade_held_out_objects_only(smollm2, monkeypatch):
    processor = build_processor(smollm2[1])
    scenes = [_scene(("tomato", "green"), ("cup", "yellow")), _scene(("star", "white"))]
    images = [draw_scene(scene) for scene in scenes]
    seen = {}

    def capture(processor, examples, scenes, images):
        seen["images"], seen["examples"] = images, examples
        return {}

    monkeypatch.setattr(heldout_train, "masked_batch", capture)
    heldout_train.heldout_batch(
        processor, scenes, images, random.Random(3), masked=True, faded=True
    )
    first, second = (_colours_in(image) for image in seen["images"])
    assert {faded(COLOURS["green"]), COLOURS["yellow"]} <= first
    assert COLOURS["green"] not in first and faded(COLOURS["white"]) in second
    heldout_train.heldout_batch(processor, scenes, images, random.Random(3), masked=True)
    assert seen["images"] is images
