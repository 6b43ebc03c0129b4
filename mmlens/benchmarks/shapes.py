"""A benchmark with exact ground truth, built from the shipped model's scene generator.

Half of the scenes are controls drawn as in training; half break a training prior (a triangle
that is not green; a cross without a circle), so the hallucination each invites is known. Each
scene gets a caption query and yes-no questions on existence, colour, count and left-of relations,
written in AMBER's file format, so `read_amber`, `score_amber` and `mmlens score amber` work on
it as on AMBER itself. `mmlens_benchmark.json` beside the files records the version, the seed,
every scene and what each question probes.

The prompts use the shipped model's lower-case, spaced style ("is there a circle in the image
?"). `mmlens/shapes` was trained on captions and one-word questions only, so its yes-no answers
are not meaningful; they are here for models that answer yes-no questions.
"""

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mmlens.benchmarks.amber import read_amber
from mmlens.benchmarks.items import BenchmarkItem, ItemSet, read_json
from mmlens.errors import BenchmarkDataError
from mmlens.outputs import atomic_folder
from mmlens.zoo.shapes.scenes import COLOURS, COUNT_WORDS, SHAPES, Scene, draw_scene, random_scene
from mmlens.zoo.shapes.text import CAPTION_PROMPTS

VERSION = 1
DEFAULT_SEED = 20_000  # disjoint from training (0) and the model card's evaluation (10,000)
EXISTENCE = "discriminative-hallucination"
COLOUR = "discriminative-attribute-state"
NUMBER = "discriminative-attribute-number"
RELATION = "discriminative-relation"
QUERY_FILES = {
    "query_discriminative-existence.json": (EXISTENCE,),
    "query_discriminative-attribute.json": (COLOUR, NUMBER),
    "query_discriminative-relation.json": (RELATION,),
}


def prior_broken(scene: Scene) -> str | None:
    """Which training prior the scene breaks: "triangle-colour", "cross-without-circle" or None."""
    if any(o.shape == "triangle" and o.colour != "green" for o in scene.objects):
        return "triangle-colour"
    if scene.find("cross") and not scene.find("circle"):
        return "cross-without-circle"
    return None


def _questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(type, prompt, truth, probe) for one scene: one present and one absent shape, each unique
    shape's colour (true and a wrong one), the count (true and a wrong one), one left-of pair."""
    present = sorted(set(scene.shapes))
    absent = [s for s in SHAPES if s not in present]
    broken = prior_broken(scene)
    found = []
    shown = rng.choice(present)
    found.append((EXISTENCE, f"is there a {shown} in the image ?", "yes", "present"))
    missing = "circle" if broken == "cross-without-circle" else rng.choice(absent)
    probe = "prior" if broken == "cross-without-circle" else "absent"
    found.append((EXISTENCE, f"is there a {missing} in the image ?", "no", probe))
    for item in scene.objects:
        if len(scene.find(item.shape)) != 1:
            continue
        found.append((COLOUR, f"is the {item.shape} {item.colour} ?", "yes", "true-colour"))
        if item.shape == "triangle" and item.colour != "green":
            wrong, probe = "green", "prior"
        else:
            wrong, probe = rng.choice([c for c in COLOURS if c != item.colour]), "wrong-colour"
        found.append((COLOUR, f"is the {item.shape} {wrong} ?", "no", probe))
    count = len(scene.objects)
    wrong_count = rng.choice([n for n in (1, 2, 3) if n != count])
    for number, truth in ((count, "yes"), (wrong_count, "no")):
        noun = "object" if number == 1 else "objects"
        verb = "is" if number == 1 else "are"
        found.append((NUMBER, f"{verb} there {COUNT_WORDS[number]} {noun} ?", truth, "count"))
    unique = [o for o in scene.objects if len(scene.find(o.shape)) == 1]
    if len(unique) >= 2:
        first, second = rng.sample(unique, 2)  # objects are ordered left to right
        truth = "yes" if scene.objects.index(first) < scene.objects.index(second) else "no"
        found.append(
            (RELATION, f"is the {first.shape} left of the {second.shape} ?", truth, "left-of")
        )
    return found


def build_shapes_benchmark(n_scenes: int = 100, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Every file of the benchmark as data: scenes, AMBER annotations, queries, metadata."""
    if n_scenes < 2:
        raise ValueError(f"n_scenes={n_scenes}: need at least 2 (controls and prior-breaking).")
    rng = random.Random(seed)
    scenes = [random_scene(rng, prior_breaking=index % 2 == 1) for index in range(n_scenes)]
    annotations, generative, discriminative, meta_items = [], [], [], {}
    for index, scene in enumerate(scenes):
        image = f"shapes_{index + 1}.png"
        present = sorted(set(scene.shapes))
        hallu = [s for s in SHAPES if s not in present]
        if prior_broken(scene) == "cross-without-circle":
            hallu = ["circle", *[s for s in hallu if s != "circle"]]
        qid = index + 1
        annotations.append({"id": qid, "type": "generative", "truth": present, "hallu": hallu})
        generative.append({"id": qid, "image": image, "query": CAPTION_PROMPTS[0]})
        meta_items[str(qid)] = {"scene": index, "probe": "caption"}
    next_id = n_scenes + 1
    for index, scene in enumerate(scenes):
        for kind, prompt, truth, probe in _questions(scene, rng):
            annotations.append({"id": next_id, "type": kind, "truth": truth})
            discriminative.append(
                {"id": next_id, "image": f"shapes_{index + 1}.png", "query": prompt}
            )
            meta_items[str(next_id)] = {"scene": index, "probe": probe}
            next_id += 1
    types = {a["id"]: a["type"] for a in annotations}
    queries = {"query_generative.json": generative, "query_discriminative.json": discriminative}
    for name, kinds in QUERY_FILES.items():
        queries[name] = [q for q in discriminative if types[q["id"]] in kinds]
    metadata = {
        "name": "mmlens-shapes",
        "version": VERSION,
        "seed": seed,
        "n_scenes": n_scenes,
        "scenes": [
            {
                "image": f"shapes_{index + 1}.png",
                "drawn_as": "prior-breaking" if index % 2 == 1 else "control",
                "prior_broken": prior_broken(scene),
                "objects": [asdict(o) for o in scene.objects],
            }
            for index, scene in enumerate(scenes)
        ],
        "items": meta_items,
    }
    return {"scenes": scenes, "annotations": annotations, "queries": queries, "metadata": metadata}


def write_shapes_benchmark(
    out: str | Path, n_scenes: int = 100, seed: int = DEFAULT_SEED, force: bool = False
) -> Path:
    """Write the benchmark as an AMBER-style data folder (plus `images/`) at `out`."""
    built = build_shapes_benchmark(n_scenes, seed)
    with atomic_folder(out, force) as work:
        (work / "query").mkdir()
        (work / "images").mkdir()
        for index, scene in enumerate(built["scenes"]):
            image = draw_scene(scene, random.Random(seed * 1000 + index))
            image.save(work / "images" / f"shapes_{index + 1}.png")
        files = {
            "annotations.json": built["annotations"],
            "relation.json": {shape: [] for shape in SHAPES},
            "mmlens_benchmark.json": built["metadata"],
            **{f"query/{name}": rows for name, rows in built["queries"].items()},
        }
        for name, content in files.items():
            (work / name).write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        (work / "safe_words.txt").write_text("", encoding="utf-8")
    return Path(out)


def read_shapes(folder: str | Path) -> ItemSet:
    """The written benchmark's items (images from `folder/images`), each with its scene and what
    it probes in `extra` ("scene", "probe", "prior_broken"), scene by scene: each scene's caption,
    then its questions."""
    folder = Path(folder)
    metadata = read_json(folder / "mmlens_benchmark.json", "the built-in benchmark's metadata")
    if metadata.get("name") != "mmlens-shapes" or metadata.get("version") != VERSION:
        raise BenchmarkDataError(
            f"{folder} holds {metadata.get('name')!r} version {metadata.get('version')!r}; this "
            f"mmlens reads mmlens-shapes version {VERSION}: write it again with `mmlens benchmark`."
        )
    found = read_amber(folder, images=folder / "images")
    items = []
    for item in found:
        probe = metadata["items"][str(item.id)]
        scene = metadata["scenes"][probe["scene"]]
        extra = {**item.extra, **probe, "prior_broken": scene["prior_broken"]}
        items.append(
            BenchmarkItem(
                "shapes", item.id, item.image, item.prompt, item.task, item.kind, item.truth, extra
            )
        )
    # scene by scene (its caption, then its questions), so any prefix (`mmlens run --limit N`)
    # holds captions and yes-no questions of the same images
    items.sort(key=lambda item: (item.extra["scene"], item.task != "generative", item.id))
    return ItemSet(tuple(items), found.skipped)
