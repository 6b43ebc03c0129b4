"""Procedural scenes for the shipped `mmlens/shapes` model, with built-in language priors.

A scene has 1-3 objects (shape, colour, size) in distinct columns (left, middle, right) of a
64x64 canvas. Two priors invite hallucination, as in real LVLMs:

* attribute prior: in training, a triangle is green `TRIANGLE_GREEN` of the time;
* co-occurrence prior: in training, a cross almost never appears without a circle.

`prior_breaking=True` draws held-out scenes that break them (a non-green triangle, or a cross
without a circle), so the hallucinated word is known exactly.
"""

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SIZE = 64
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
    "orange": (240, 140, 30),
}
SIZES = {"small": 6, "large": 11}
POSITIONS = ("left", "middle", "right")
COUNT_WORDS = ("zero", "one", "two", "three")
TRIANGLE_GREEN = 0.9
CROSS_WITH_CIRCLE = 0.95


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str
    dy: int = 0  # vertical offset from the centre line, pixels


@dataclass(frozen=True)
class Scene:
    """Objects ordered left to right."""

    objects: tuple[SceneObject, ...]

    @property
    def shapes(self) -> list[str]:
        return [item.shape for item in self.objects]

    def find(self, shape: str) -> list[SceneObject]:
        return [item for item in self.objects if item.shape == shape]


def _colour_for(shape: str, rng: random.Random, prior_breaking: bool) -> str:
    if shape == "triangle":
        if prior_breaking:
            return rng.choice([c for c in COLOURS if c != "green"])
        if rng.random() < TRIANGLE_GREEN:
            return "green"
    return rng.choice(list(COLOURS))


def random_scene(rng: random.Random, prior_breaking: bool = False) -> Scene:
    """One scene; with `prior_breaking`, one that contradicts a training prior."""
    count = rng.randint(1, 3)
    shapes = [rng.choice(SHAPES) for _ in range(count)]
    if prior_breaking:
        if rng.random() < 0.5:  # a non-green triangle
            shapes[rng.randrange(count)] = "triangle"
        else:  # a cross without a circle
            shapes = [s if s != "circle" else rng.choice(("square", "diamond")) for s in shapes]
            shapes[rng.randrange(count)] = "cross"
    elif "cross" in shapes and "circle" not in shapes and rng.random() < CROSS_WITH_CIRCLE:
        if count < 3:
            shapes.append("circle")
        else:  # no free column: a shape other than the cross becomes the circle
            others = [i for i, shape in enumerate(shapes) if shape != "cross"] or [1]
            shapes[others[0]] = "circle"
    columns = sorted(rng.sample(range(3), len(shapes)))
    rng.shuffle(shapes)
    objects = tuple(
        SceneObject(
            shape,
            _colour_for(shape, rng, prior_breaking and shape == "triangle"),
            rng.choice(list(SIZES)),
            POSITIONS[column],
            rng.randint(-12, 12),
        )
        for shape, column in zip(shapes, columns, strict=True)
    )
    return Scene(objects)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [
            (cx + r * math.cos(a), cy + r * math.sin(a))
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    w = r * 0.35  # cross
    return [
        (cx - w, cy - r),
        (cx + w, cy - r),
        (cx + w, cy - w),
        (cx + r, cy - w),
        (cx + r, cy + w),
        (cx + w, cy + w),
        (cx + w, cy + r),
        (cx - w, cy + r),
        (cx - w, cy + w),
        (cx - r, cy + w),
        (cx - r, cy - w),
        (cx - w, cy - w),
    ]


def draw_scene(scene: Scene, rng: random.Random | None = None) -> Image.Image:
    """Render a scene as a 64x64 RGB image (light background with a little noise)."""
    rng = rng or random.Random(0)
    shade = rng.randint(200, 235)
    image = Image.new("RGB", (SIZE, SIZE), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    for item in scene.objects:
        cx = (POSITIONS.index(item.position) + 0.5) * SIZE / 3
        cy = SIZE / 2 + item.dy
        r = float(SIZES[item.size])
        colour = COLOURS[item.colour]
        if item.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.polygon(_polygon(item.shape, cx, cy, r), fill=colour)
    return image
