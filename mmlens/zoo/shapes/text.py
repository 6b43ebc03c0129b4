"""Captions, one-word VQA and the word-level vocabulary of the shapes model."""

import random
from dataclasses import dataclass

from mmlens.zoo.shapes.scenes import COLOURS, COUNT_WORDS, POSITIONS, SHAPES, SIZES, Scene

CAPTION_PROMPTS = ("please describe this image in detail .", "describe the image .")
QUESTION_KINDS = ("colour", "shape", "count", "position")


@dataclass(frozen=True)
class Example:
    """A prompt (without the chat template) and the answer the model should give."""

    kind: str  # "caption" or one of QUESTION_KINDS
    prompt: str
    answer: str


def caption(scene: Scene) -> str:
    """'there are two objects . a large green triangle on the left . a small ...'"""
    n = len(scene.objects)
    head = f"there are {COUNT_WORDS[n]} objects ." if n > 1 else "there is one object ."
    parts = [f"a {o.size} {o.colour} {o.shape} on the {o.position} ." for o in scene.objects]
    return " ".join([head, *parts])


def questions(scene: Scene) -> list[Example]:
    """Every one-word question this scene answers unambiguously."""
    found = [Example("count", "how many objects are there ?", COUNT_WORDS[len(scene.objects)])]
    for item in scene.objects:
        found.append(Example("shape", f"what shape is on the {item.position} ?", item.shape))
        if len(scene.find(item.shape)) == 1:
            found.append(Example("colour", f"what colour is the {item.shape} ?", item.colour))
            found.append(Example("position", f"where is the {item.shape} ?", item.position))
    return found


def random_example(scene: Scene, rng: random.Random, caption_share: float = 0.5) -> Example:
    """A caption example or one of the scene's questions."""
    if rng.random() < caption_share:
        return Example("caption", rng.choice(CAPTION_PROMPTS), caption(scene))
    return rng.choice(questions(scene))


def vocabulary() -> list[str]:
    """Every word the templates use (specials excluded), in a fixed order."""
    words = [
        "user",
        "assistant",
        ":",
        ".",
        "?",
        "there",
        "is",
        "are",
        "object",
        "objects",
        "a",
        "on",
        "the",
        "please",
        "describe",
        "this",
        "image",
        "in",
        "detail",
        "what",
        "colour",
        "shape",
        "how",
        "many",
        "where",
    ]
    for group in (SHAPES, tuple(COLOURS), tuple(SIZES), POSITIONS, COUNT_WORDS):
        words.extend(word for word in group if word not in words)
    return words
