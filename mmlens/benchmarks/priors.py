"""A caption benchmark for `mmlens/priors`: one drawn object per scene, colour truth exact.

Half of the scenes draw an object that has a language prior colour (`zoo.priors.PRIOR_COLOURS`)
in another colour ("prior-breaking"); half draw any object in any colour ("control"). Each scene
has one caption query; the truth words are the object and its colour, so a colour judge
(`mmlens link --objects COLOURS.json`) marks every wrong colour word as hallucinated. The folder is
in AMBER's format (as `benchmarks.shapes` writes it), so `mmlens run priors` and `mmlens link` read
it; `mmlens_benchmark.json` records the version, the seed and every scene.
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
from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import COLOURS, DRAWERS, Scene, SceneObject, draw_scene
from mmlens.zoo.priors.text import CAPTION_PROMPT

NAME = "mmlens-priors"
VERSION = 1
DEFAULT_SEED = 30_000  # disjoint from training (string seeds) and the model card's (10,000)


def _scene(rng: random.Random, breaking: bool) -> Scene:
    if breaking:
        name = rng.choice(sorted(PRIOR_COLOURS))
        colour = rng.choice([c for c in COLOURS if c != PRIOR_COLOURS[name]])
    else:
        name, colour = rng.choice(sorted(DRAWERS)), rng.choice(list(COLOURS))
    obj = SceneObject(
        name, colour, "middle", rng.uniform(9.0, 12.0), rng.randint(-3, 3), rng.randint(-8, 8)
    )
    return Scene((obj,))


def write_priors_benchmark(
    out: str | Path, n_scenes: int = 200, seed: int = DEFAULT_SEED, force: bool = False
) -> Path:
    """Write the benchmark (AMBER-format files plus `images/`) to `out`."""
    if n_scenes < 2:
        raise ValueError(f"n_scenes={n_scenes}: need at least 2 (controls and prior-breaking).")
    rng = random.Random(seed)
    scenes = [_scene(rng, breaking=index % 2 == 1) for index in range(n_scenes)]
    annotations, queries, described = [], [], []
    for index, scene in enumerate(scenes):
        obj = scene.objects[0]
        image = f"priors_{index + 1}.png"
        hallu = [n for n in DRAWERS if n != obj.name] + [c for c in COLOURS if c != obj.colour]
        annotations.append(
            {"id": index + 1, "type": "generative", "truth": [obj.name, obj.colour], "hallu": hallu}
        )
        queries.append({"id": index + 1, "image": image, "query": CAPTION_PROMPT})
        described.append(
            {
                "image": image,
                "drawn_as": "prior-breaking" if index % 2 else "control",
                "prior": PRIOR_COLOURS.get(obj.name, ""),
                "objects": [asdict(obj)],
            }
        )
    metadata = {
        "name": NAME,
        "version": VERSION,
        "seed": seed,
        "n_scenes": n_scenes,
        "scenes": described,
    }
    with atomic_folder(out, force) as work:
        (work / "query").mkdir()
        (work / "images").mkdir()
        for index, scene in enumerate(scenes):
            draw_scene(scene, random.Random(seed + index)).save(
                work / "images" / f"priors_{index + 1}.png"
            )
        files: dict[str, Any] = {
            "annotations.json": annotations,
            "relation.json": {name: [] for name in (*DRAWERS, *COLOURS)},
            "mmlens_benchmark.json": metadata,
            "query/query_generative.json": queries,
            "colours.json": list(COLOURS),
        }
        for name, content in files.items():
            (work / name).write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        (work / "safe_words.txt").write_text("", encoding="utf-8")
    return Path(out)


def read_priors(folder: str | Path) -> ItemSet:
    """The written benchmark's caption items, each with its scene in `extra` ("object",
    "colour", "prior", "drawn_as")."""
    folder = Path(folder)
    metadata = read_json(folder / "mmlens_benchmark.json", "the priors benchmark's metadata")
    if metadata.get("name") != NAME or metadata.get("version") != VERSION:
        raise BenchmarkDataError(
            f"{folder} holds {metadata.get('name')!r} version {metadata.get('version')!r}; this "
            f"mmlens reads {NAME} version {VERSION}: write it again with `mmlens benchmark priors`."
        )
    found = read_amber(folder, images=folder / "images", query_files=("query_generative.json",))
    items = []
    for item in found:
        scene = metadata["scenes"][item.id - 1]
        obj = scene["objects"][0]
        extra = {
            **item.extra,
            "object": obj["name"],
            "colour": obj["colour"],
            "prior": scene["prior"],
            "drawn_as": scene["drawn_as"],
        }
        items.append(
            BenchmarkItem(
                "priors", item.id, item.image, item.prompt, item.task, item.kind, item.truth, extra
            )
        )
    return ItemSet(tuple(items), found.skipped)
