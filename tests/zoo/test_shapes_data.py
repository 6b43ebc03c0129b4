"""The shapes data generator: deterministic, with the priors it promises, in its vocabulary."""

import random

import numpy as np

from mmlens.zoo.shapes.evaluate import eval_scenes
from mmlens.zoo.shapes.scenes import (
    CROSS_WITH_CIRCLE,
    TRIANGLE_GREEN,
    draw_scene,
    random_scene,
)
from mmlens.zoo.shapes.text import caption, questions, random_example, vocabulary
from mmlens.zoo.tiny import build_tokenizer


def _scenes(seed: int, n: int, **kwargs):
    rng = random.Random(seed)
    return [random_scene(rng, **kwargs) for _ in range(n)]


def test_generator_is_deterministic_for_a_seed():
    first, second = _scenes(7, 50), _scenes(7, 50)
    assert first == second and first != _scenes(8, 50)
    images = [np.asarray(draw_scene(s, random.Random(i))) for i, s in enumerate(first[:5])]
    again = [np.asarray(draw_scene(s, random.Random(i))) for i, s in enumerate(second[:5])]
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    assert eval_scenes(20) == eval_scenes(20)


def test_training_priors_hold():
    scenes = _scenes(0, 4000)
    triangles = [o for s in scenes for o in s.objects if o.shape == "triangle"]
    green = np.mean([o.colour == "green" for o in triangles])
    assert abs(green - (TRIANGLE_GREEN + (1 - TRIANGLE_GREEN) / 6)) < 0.03
    with_cross = [s for s in scenes if "cross" in s.shapes]
    assert np.mean(["circle" in s.shapes for s in with_cross]) >= CROSS_WITH_CIRCLE - 0.02
    others = [o for s in scenes for o in s.objects if o.shape == "square"]
    assert abs(np.mean([o.colour == "green" for o in others]) - 1 / 6) < 0.04


def test_prior_breaking_scenes_break_a_prior():
    for scene in _scenes(1, 300, prior_breaking=True):
        odd_triangle = any(o.shape == "triangle" and o.colour != "green" for o in scene.objects)
        lonely_cross = "cross" in scene.shapes and "circle" not in scene.shapes
        assert odd_triangle or lonely_cross


def test_scenes_are_well_formed_and_drawn():
    for scene in _scenes(2, 300):
        positions = [o.position for o in scene.objects]
        assert 1 <= len(positions) <= 3 and len(set(positions)) == len(positions)
        assert positions == sorted(positions, key=["left", "middle", "right"].index)
    image = np.asarray(draw_scene(_scenes(3, 1)[0]))
    assert image.shape == (64, 64, 3) and image.std() > 5


def test_every_text_is_in_the_vocabulary():
    tokenizer = build_tokenizer(vocabulary(), lowercase=True)
    rng = random.Random(4)
    for scene in _scenes(5, 200):
        texts = [
            caption(scene),
            *[f"{q.prompt} {q.answer}" for q in questions(scene)],
            random_example(scene, rng).prompt,
        ]
        for text in texts:
            assert tokenizer.unk_token_id not in tokenizer.encode(text), text
