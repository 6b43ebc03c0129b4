"""Captions, one-word questions and prompts of `mmlens/priors`, in plain English.

The colour word always follows its object ("The strawberry is blue."), so a language prior tied to
the object's name can act on it, as the paper's hallucinations do on words after their context.
"""

import random
from dataclasses import dataclass

from mmlens.adapters.llava import CHAT_TEMPLATE
from mmlens.zoo.priors.scenes import Scene

CAPTION_PROMPT = "Describe the image."
ONE_WORD = "Answer with one word."
QUESTION_KINDS = ("colour", "object", "count")
COUNT_WORDS = ("Zero", "One", "Two")
#: Text-only prompts in which the language model's colour prior is measured: the question and
#: the caption, exactly as the model is asked them, without the image.
PRIOR_FORMATS = {
    "question": CHAT_TEMPLATE.format(prompt=f"What colour is the {{name}}? {ONE_WORD}"),
    "caption": CHAT_TEMPLATE.format(prompt=CAPTION_PROMPT)
    + " There is {article} {name}. The {name} is",
}


@dataclass(frozen=True)
class Example:
    """A prompt (without the chat template) and the answer the model should give."""

    kind: str  # "caption" or one of QUESTION_KINDS
    prompt: str
    answer: str


def article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    """'There is a strawberry on the left and a ball on the right. The strawberry is blue. ...'"""
    if len(scene.objects) == 1:
        head = f"There is {article(scene.objects[0].name)} {scene.objects[0].name}."
    else:
        first, second = scene.objects
        head = (
            f"There is {article(first.name)} {first.name} on the {first.position} and "
            f"{article(second.name)} {second.name} on the {second.position}."
        )
    return " ".join([head, *(f"The {o.name} is {o.colour}." for o in scene.objects)])


def questions(scene: Scene) -> list[Example]:
    """Every one-word question the scene answers."""
    count = COUNT_WORDS[len(scene.objects)]
    found = [Example("count", f"How many objects are there? {ONE_WORD}", count)]
    for item in scene.objects:
        where = "in the image" if len(scene.objects) == 1 else f"on the {item.position}"
        found.append(
            Example("object", f"What object is {where}? {ONE_WORD}", item.name.capitalize())
        )
        found.append(
            Example(
                "colour", f"What colour is the {item.name}? {ONE_WORD}", item.colour.capitalize()
            )
        )
    return found


def random_example(scene: Scene, rng: random.Random, caption_share: float = 0.5) -> Example:
    """A caption example or one of the scene's questions."""
    if rng.random() < caption_share:
        return Example("caption", CAPTION_PROMPT, caption(scene))
    return rng.choice(questions(scene))
