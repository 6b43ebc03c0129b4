"""Held-out evaluation of `mmlens/priors`: answers, captions, and prior-driven colour errors.

    python -m mmlens.zoo.priors.evaluate [--model DIR] [--n 300]

Scenes come from a seed disjoint from training's (`EVAL_SEED`). Colours are balanced, so most
objects with a prior colour (`priors.PRIOR_COLOURS`) are drawn in another one: saying the prior
colour then is a *prior-driven* error. SmolLM2 leans to some colours for everything, so the
control is the rate at which the same colour is said for objects that have no prior for it and
are not drawn in it.
"""

import argparse
import random
import re
from typing import Any

import numpy as np
import pandas as pd

from mmlens.analyses.intervals import difference_interval
from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import COLOURS, DRAWERS, Scene, SceneObject, draw_scene, random_scene
from mmlens.zoo.priors.text import CAPTION_PROMPT, caption, questions

EVAL_SEED = 10_000
MAX_CAPTION_TOKENS = 40


def eval_scenes(n: int, seed: int = EVAL_SEED) -> list[tuple[Scene, Any]]:
    """`n` held-out scenes and their images (deterministic for a seed)."""
    rng = random.Random(seed)
    scenes = [random_scene(rng, tuple(DRAWERS)) for _ in range(n)]
    return [
        (scene, draw_scene(scene, random.Random(seed + index)))
        for index, scene in enumerate(scenes)
    ]


def first_word(text: str) -> str:
    found = re.findall(r"[a-z]+", text.lower())
    return found[0] if found else ""


def said_colours(text: str, scene: Scene) -> dict[str, str]:
    """Object name -> the colour word a caption gives it in "The {name} is {colour}" ('' if the
    caption has no such sentence)."""
    found = {}
    for item in scene.objects:
        match = re.search(rf"\bthe {item.name} is (\w+)", text.lower())
        found[item.name] = match.group(1) if match else ""
    return found


def answer_table(model: Any, n: int, batch_size: int = 16, seed: int = EVAL_SEED) -> pd.DataFrame:
    """One row per question or caption on `n` held-out scenes, with the greedy answer."""
    jobs = []
    for index, (scene, image) in enumerate(eval_scenes(n, seed)):
        for example in questions(scene):
            obj = next((o for o in scene.objects if o.name in example.prompt), None)
            jobs.append((index, scene, image, example.kind, example.prompt, example.answer, obj))
        jobs.append((index, scene, image, "caption", CAPTION_PROMPT, caption(scene), None))
    rows = []
    for kind_tokens, selected in (
        (3, [j for j in jobs if j[3] != "caption"]),
        (MAX_CAPTION_TOKENS, [j for j in jobs if j[3] == "caption"]),
    ):
        for start in range(0, len(selected), batch_size):
            part = selected[start : start + batch_size]
            outputs = model.generate(
                [j[2] for j in part], [j[4] for j in part], max_new_tokens=kind_tokens
            )
            for (index, scene, _, kind, prompt, expected, obj), out in zip(
                part, outputs, strict=True
            ):
                rows.append(
                    {
                        "scene": index,
                        "n_objects": len(scene.objects),
                        "kind": kind,
                        "object": obj.name if obj else "",
                        "drawn": obj.colour if obj else "",
                        "prompt": prompt,
                        "expected": expected,
                        "generated": out.text.strip(),
                        "objects": ",".join(f"{o.name}:{o.colour}" for o in scene.objects),
                    }
                )
    return pd.DataFrame(rows)


def _scene_of(row: pd.Series) -> Scene:
    from mmlens.zoo.priors.scenes import SceneObject

    parts = [p.split(":") for p in row["objects"].split(",")]
    return Scene(tuple(SceneObject(name, colour, "middle", 10.0) for name, colour in parts))


def accuracy(answers: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per question kind and scene size, and caption quality."""
    rows = []
    questions_only = answers[answers["kind"] != "caption"]
    right = questions_only["generated"].map(first_word) == questions_only["expected"].str.lower()
    for (kind, size), group in right.groupby([questions_only["kind"], questions_only["n_objects"]]):
        rows.append(
            {"measure": f"VQA {kind}", "objects": size, "value": group.mean(), "n": len(group)}
        )
    captions = answers[answers["kind"] == "caption"]
    for size, group in captions.groupby("n_objects"):
        exact = (group["generated"] == group["expected"]).mean()
        named, coloured, total = 0, 0, 0
        for _, row in group.iterrows():
            scene = _scene_of(row)
            head = row["generated"].lower().split(".")[0]
            said = said_colours(row["generated"], scene)
            for item in scene.objects:
                total += 1
                named += bool(re.search(rf"\b{item.name}\b", head))
                coloured += said[item.name] == item.colour
        rows += [
            {"measure": "caption exactly right", "objects": size, "value": exact, "n": len(group)},
            {
                "measure": "caption names the object",
                "objects": size,
                "value": named / total,
                "n": total,
            },
            {
                "measure": "caption gives the right colour",
                "objects": size,
                "value": coloured / total,
                "n": total,
            },
        ]
    return pd.DataFrame(rows)


def colour_calls(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per object and source ("question" or "caption"): its scene and the scene's number
    of objects, the colour drawn, the colour said, and the object's prior colour ('' if none)."""
    rows = []
    for _, row in answers[answers["kind"] == "colour"].iterrows():
        rows.append(
            {
                "scene": row["scene"],
                "n_objects": row["n_objects"],
                "source": "question",
                "object": row["object"],
                "drawn": row["drawn"],
                "said": first_word(row["generated"]),
            }
        )
    for _, row in answers[answers["kind"] == "caption"].iterrows():
        scene = _scene_of(row)
        for name, said in said_colours(row["generated"], scene).items():
            rows.append(
                {
                    "scene": row["scene"],
                    "n_objects": row["n_objects"],
                    "source": "caption",
                    "object": name,
                    "drawn": scene.find(name).colour,
                    "said": said,
                }
            )
    calls = pd.DataFrame(rows)
    calls["prior"] = calls["object"].map(PRIOR_COLOURS).fillna("")
    return calls


def prior_errors(calls: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per source and prior colour (and "all"): how often an object drawn against its prior is
    called by its prior colour, against the control (objects with no prior for that colour, not
    drawn in it, called that colour), with a 95 % bootstrap interval of the difference. "all"
    weights each colour's control by how many prior-breaking objects have that prior."""
    rows = []
    for source, part in calls.groupby("source"):
        breaking = part[(part["prior"] != "") & (part["drawn"] != part["prior"])]
        hits, controls = [], []
        for colour, group in breaking.groupby("prior"):
            control = part[(part["prior"] != colour) & (part["drawn"] != colour)]
            said = (group["said"] == colour).to_numpy(float)
            base = (control["said"] == colour).to_numpy(float)
            rows.append(_row(source, colour, said, base, seed))
            hits.append(said)
            controls.append(np.full(len(group), base.mean()))
        if hits:
            said, base = np.concatenate(hits), np.concatenate(controls)
            row = _row(source, "all", said, base, seed)
            row["control"] = float(base.mean())
            row["n_control"] = int(sum(len(c) for c in controls))
            rows.append(row)
    return pd.DataFrame(rows)


def _row(source: str, colour: str, said: np.ndarray, base: np.ndarray, seed: int) -> dict:
    interval = difference_interval(said, base, seed=seed) if len(said) and len(base) else None
    return {
        "source": source,
        "prior": colour,
        "rate": float(said.mean()),
        "n": len(said),
        "control": float(base.mean()),
        "n_control": len(base),
        "difference_low": interval.low if interval else float("nan"),
        "difference_high": interval.high if interval else float("nan"),
    }


#: Colours the model never saw: with no trained colour to read, does the language prior show?
OFF_PALETTE = {
    "orange": (240, 140, 30),
    "purple": (150, 60, 190),
    "pink": (240, 150, 180),
    "brown": (130, 80, 40),
}


def off_palette_calls(model: Any, per_object: int = 3, seed: int = EVAL_SEED) -> pd.DataFrame:
    """Every object drawn alone in each `OFF_PALETTE` colour (`per_object` placements each), with
    the colour its caption and its colour answer give. Columns as `colour_calls`."""
    rng = random.Random(seed)
    jobs = []
    for name in DRAWERS:
        for colour in OFF_PALETTE:
            for _ in range(per_object):
                obj = SceneObject(
                    name,
                    colour,
                    "middle",
                    rng.uniform(9.0, 12.0),
                    rng.randint(-3, 3),
                    rng.randint(-8, 8),
                )
                jobs.append((Scene((obj,)), rng.randint(0, 10**6)))
    palette = {**COLOURS, **OFF_PALETTE}
    images = [draw_scene(scene, random.Random(image_seed), palette) for scene, image_seed in jobs]
    rows = []
    for source, prompt, tokens in (("caption", CAPTION_PROMPT, 16), ("question", None, 3)):
        for start in range(0, len(jobs), 16):
            part = jobs[start : start + 16]
            prompts = [
                prompt or f"What colour is the {s.objects[0].name}? Answer with one word."
                for s, _ in part
            ]
            outputs = model.generate(images[start : start + 16], prompts, max_new_tokens=tokens)
            for (scene, _), out in zip(part, outputs, strict=True):
                obj = scene.objects[0]
                said = (
                    said_colours(out.text, scene)[obj.name]
                    if source == "caption"
                    else first_word(out.text)
                )
                rows.append(
                    {
                        "scene": len(rows),
                        "source": source,
                        "object": obj.name,
                        "drawn": obj.colour,
                        "said": said,
                    }
                )
    calls = pd.DataFrame(rows)
    calls["prior"] = calls["object"].map(PRIOR_COLOURS).fillna("")
    return calls


def main() -> None:
    from mmlens.loading import load

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mmlens/priors")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--out", default=None, help="folder for answers.csv and calls.csv")
    parser.add_argument(
        "--off-palette",
        action="store_true",
        help="also draw every object in colours it was never trained on",
    )
    args = parser.parse_args()
    model = load(args.model)
    if args.off_palette:
        off = off_palette_calls(model)
        print(prior_errors(off).round(3).to_string(index=False))
        print(off.groupby(["source", "drawn"])["said"].value_counts().unstack(fill_value=0))
    answers = answer_table(model, args.n)
    calls = colour_calls(answers)
    if args.out:
        from pathlib import Path

        Path(args.out).mkdir(parents=True, exist_ok=True)
        answers.to_csv(Path(args.out) / "answers.csv", index=False)
        calls.to_csv(Path(args.out) / "calls.csv", index=False)
    print(accuracy(answers).round(3).to_string(index=False))
    print("Prior colour errors, one- and two-object scenes pooled:")
    print(prior_errors(calls).round(3).to_string(index=False))
    for count, part in calls.groupby("n_objects"):
        print(f"Scenes with {count} object(s) only:")
        print(prior_errors(part).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
