"""What `mmlens/heldout` supervises: colour on three non-prior objects only.

Held out are the ten objects with a measured colour prior (`priors.PRIOR_COLOURS`) and a matched
control set of three non-prior objects (`CONTROLS`). Held-out objects still appear in training:
they are named, counted and placed, in every colour, but no loss ever asks for their colour (stage
1 masks their colour label; captions drop their "The X is C." sentence and colour questions about
them are never asked). At test time, a held-out prior object drawn against its prior shows whether
the language model's prior fills the gap; the held-out controls give the rate at which the same
colour is said when no prior pushes for it.
"""

import random
from collections.abc import Collection

from torch import Tensor

from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import Scene
from mmlens.zoo.priors.text import Example, caption, questions

#: Objects whose colour is supervised (no measured prior).
SUPERVISED = ("carrot", "ball", "cup")
#: Non-prior objects whose colour is held out too: the control for the prior objects.
CONTROLS = ("box", "star", "hat")
#: Every object whose colour is never supervised.
HELD_OUT = (*PRIOR_COLOURS, *CONTROLS)


def heldout_caption(scene: Scene) -> str:
    """`text.caption` without the colour sentences of held-out objects: 'There is a strawberry on
    the left and a ball on the right. The ball is red.' (the naming sentence is unchanged)."""
    head = caption(scene).split(". ")[0].rstrip(".") + "."
    colours = [f"The {o.name} is {o.colour}." for o in scene.objects if o.name not in HELD_OUT]
    return " ".join([head, *colours])


def heldout_questions(scene: Scene) -> list[Example]:
    """`text.questions` without colour questions about held-out objects."""
    return [
        example
        for example in questions(scene)
        if not (
            example.kind == "colour" and any(f"the {name}?" in example.prompt for name in HELD_OUT)
        )
    ]


def heldout_example(scene: Scene, rng: random.Random, caption_share: float = 0.5) -> Example:
    """`text.random_example` with held-out colours removed (same random draws)."""
    if rng.random() < caption_share:
        return Example("caption", "Describe the image.", heldout_caption(scene))
    return rng.choice(heldout_questions(scene))


def mask_colour_targets(
    targets: Tensor,
    scenes: list[Scene],
    slots: tuple[str, ...],
    names: Collection[str] = HELD_OUT,
) -> Tensor:
    """Stage-1 labels ([batch, slot, 2]: object, colour) with the colour of every object in `names`
    (default: the held-out ones) set to -100, which cross-entropy ignores. Empty slots keep their
    'empty' class, so the colour loss always has a target."""
    targets = targets.clone()
    for row, scene in enumerate(scenes):
        for item in scene.objects:
            if item.name in names:
                targets[row, slots.index(item.position), 1] = -100
    return targets


def masked_caption_pieces(scene: Scene) -> list[tuple[str, bool]]:
    """The full `text.caption` (held-out colour sentences kept) as (text, supervised) pieces: the
    colour word of a held-out object is a piece of its own with `supervised` False, so its tokens
    are input but never a target. The caption's format ('The strawberry is ...') is learned for
    every object; which colour follows a held-out name is never taught."""
    head = caption(scene).split(". ")[0].rstrip(".") + "."
    pieces = [(f" {head}", True)]
    for o in scene.objects:
        if o.name in HELD_OUT:
            pieces += [(f" The {o.name} is", True), (f" {o.colour}", False), (".", True)]
        else:
            pieces.append((f" The {o.name} is {o.colour}.", True))
    return pieces
