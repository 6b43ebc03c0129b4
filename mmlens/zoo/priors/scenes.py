"""Scenes for `mmlens/priors`: one or two drawn objects, every object in a uniformly random colour.

Colours are balanced on purpose: any preference the model shows for a strawberry being red comes
from its language model's pretraining, not from our data. Each object is a flat silhouette in one
colour on a mid-grey background (so white and black objects show).
"""

import math
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass

from PIL import Image, ImageDraw

SIZE = 64
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (40, 75, 215),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
POSITIONS = ("left", "right")
Point = tuple[float, float]
Drawer = Callable[[ImageDraw.ImageDraw, float, float, float, tuple[int, int, int]], None]


def _circle(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _ball(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    _circle(draw, x, y, r, fill)


def _box(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    s = r * 0.85
    draw.rectangle([x - s, y - s, x + s, y + s], fill=fill)


def _star(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    points = [
        (
            x + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
            y - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5),
        )
        for i in range(10)
    ]
    draw.polygon(points, fill=fill)


def _cup(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.polygon(
        [
            (x - r * 0.75, y - r * 0.7),
            (x + r * 0.55, y - r * 0.7),
            (x + r * 0.35, y + r * 0.8),
            (x - r * 0.55, y + r * 0.8),
        ],
        fill=fill,
    )
    draw.ellipse(
        [x + r * 0.2, y - r * 0.45, x + r, y + r * 0.35],
        outline=fill,
        width=max(2, round(r * 0.22)),
    )


def _hat(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.rectangle([x - r, y + r * 0.35, x + r, y + r * 0.6], fill=fill)
    draw.rectangle([x - r * 0.55, y - r * 0.8, x + r * 0.55, y + r * 0.4], fill=fill)


def _umbrella(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.pieslice([x - r, y - r * 0.9, x + r, y + r * 1.1], 180, 360, fill=fill)
    width = max(2, round(r * 0.15))
    draw.line([(x, y), (x, y + r * 0.9)], fill=fill, width=width)
    draw.arc([x - r * 0.35, y + r * 0.6, x + r * 0.05, y + r], 0, 180, fill=fill, width=width)


def _strawberry(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    top = y - r * 0.25
    draw.pieslice([x - r * 0.85, top - r * 0.6, x + r * 0.85, top + r * 0.6], 180, 360, fill=fill)
    draw.polygon([(x - r * 0.85, top), (x + r * 0.85, top), (x, y + r)], fill=fill)
    draw.polygon(
        [
            (x - r * 0.5, top - r * 0.75),
            (x, top - r * 0.45),
            (x + r * 0.5, top - r * 0.75),
            (x + r * 0.15, top - r * 0.5),
            (x, top - r),
        ],
        fill=fill,
    )


def _cherry(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    width = max(2, round(r * 0.13))
    stalk = (x + r * 0.15, y - r)
    for dx, dy in ((-0.5, 0.5), (0.5, 0.35)):
        cx, cy = x + dx * r, y + dy * r
        draw.line([(cx, cy), stalk], fill=fill, width=width)
        _circle(draw, cx, cy, r * 0.42, fill)


def _tomato(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.8], fill=fill)
    draw.rectangle([x - r * 0.1, y - r, x + r * 0.1, y - r * 0.6], fill=fill)
    draw.polygon(
        [(x - r * 0.55, y - r * 0.6), (x, y - r * 0.85), (x + r * 0.55, y - r * 0.6)], fill=fill
    )


def _leaf(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    points = []
    for i in range(24):
        t = 2 * math.pi * i / 24
        u, v = r * 0.85 * math.cos(t), r * 0.38 * math.sin(t) * abs(math.cos(t)) ** 0.2
        points.append((x + u * c - v * s - r * 0.1, y - u * s - v * c + r * 0.1))
    draw.polygon(points, fill=fill)
    draw.line(
        [(x + r * 0.4, y + r * 0.4), (x + r * 0.95, y + r * 0.95)],
        fill=fill,
        width=max(2, round(r * 0.15)),
    )


def _broccoli(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.polygon(
        [(x - r * 0.2, y), (x + r * 0.2, y), (x + r * 0.3, y + r), (x - r * 0.3, y + r)], fill=fill
    )
    for dx, dy, size in ((-0.5, -0.2, 0.45), (0.5, -0.2, 0.45), (0.0, -0.55, 0.5)):
        _circle(draw, x + dx * r, y + dy * r, size * r, fill)


def _snowman(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    _circle(draw, x, y + r * 0.4, r * 0.6, fill)
    _circle(draw, x, y - r * 0.55, r * 0.4, fill)


def _cloud(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    for dx, dy, size in ((-0.55, 0.1, 0.4), (0.0, -0.15, 0.55), (0.55, 0.1, 0.4)):
        _circle(draw, x + dx * r, y + dy * r, size * r, fill)
    draw.rectangle([x - r * 0.55, y + r * 0.1, x + r * 0.55, y + r * 0.5], fill=fill)


def _fish(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.ellipse([x - r, y - r * 0.45, x + r * 0.45, y + r * 0.45], fill=fill)
    draw.polygon([(x + r * 0.3, y), (x + r, y - r * 0.5), (x + r, y + r * 0.5)], fill=fill)


def _banana(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.arc([x - r, y - r * 1.4, x + r, y + r * 0.6], 25, 155, fill=fill, width=round(r * 0.45))


def _carrot(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: tuple) -> None:
    draw.polygon([(x - r * 0.35, y - r * 0.5), (x + r * 0.35, y - r * 0.5), (x, y + r)], fill=fill)
    width = max(2, round(r * 0.14))
    for dx in (-0.3, 0.0, 0.3):
        draw.line([(x, y - r * 0.5), (x + dx * r, y - r)], fill=fill, width=width)


DRAWERS: dict[str, Drawer] = {
    "strawberry": _strawberry,
    "cherry": _cherry,
    "tomato": _tomato,
    "leaf": _leaf,
    "broccoli": _broccoli,
    "snowman": _snowman,
    "cloud": _cloud,
    "fish": _fish,
    "banana": _banana,
    "carrot": _carrot,
    "ball": _ball,
    "box": _box,
    "star": _star,
    "cup": _cup,
    "hat": _hat,
    "umbrella": _umbrella,
}


@dataclass(frozen=True)
class SceneObject:
    name: str
    colour: str
    position: str  # "left", "right", or "middle" when it is alone
    radius: float
    dx: int = 0
    dy: int = 0


@dataclass(frozen=True)
class Scene:
    """One object in the middle, or two distinct objects, left then right."""

    objects: tuple[SceneObject, ...]

    def find(self, name: str) -> SceneObject | None:
        return next((o for o in self.objects if o.name == name), None)


def random_scene(
    rng: random.Random, names: tuple[str, ...], colour: dict[str, str] | None = None
) -> Scene:
    """One or two objects drawn from `names`, each in a uniformly random colour unless `colour`
    fixes some (object name -> colour)."""
    count = rng.choice((1, 2))
    chosen = rng.sample(names, count)
    positions = ("middle",) if count == 1 else POSITIONS
    objects = tuple(
        SceneObject(
            name,
            (colour or {}).get(name) or rng.choice(list(COLOURS)),
            position,
            rng.uniform(9.0, 12.0),
            rng.randint(-3, 3),
            rng.randint(-8, 8),
        )
        for name, position in zip(chosen, positions, strict=True)
    )
    return Scene(objects)


def faded(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour mixed half way to mid-grey: weaker colour evidence, the same hue."""
    return tuple(round((v + 128) / 2) for v in rgb)


def draw_scene(
    scene: Scene,
    rng: random.Random | None = None,
    palette: dict[str, tuple[int, int, int]] = COLOURS,
    fade: Collection[str] = (),
) -> Image.Image:
    """Render a scene as a 64x64 RGB image on a mid-grey background (colours from `palette`;
    objects named in `fade` get their colour `faded`)."""
    rng = rng or random.Random(0)
    shade = rng.randint(105, 150)
    image = Image.new("RGB", (SIZE, SIZE), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    centres = {"left": SIZE / 4, "middle": SIZE / 2, "right": 3 * SIZE / 4}
    for item in scene.objects:
        x, y = centres[item.position] + item.dx, SIZE / 2 + item.dy
        colour = palette[item.colour]
        DRAWERS[item.name](draw, x, y, item.radius, faded(colour) if item.name in fade else colour)
    return image
