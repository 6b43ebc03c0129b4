"""Held-out evaluation of the shapes model: VQA accuracy, captions, and hallucination rates.

    python -m mmlens.zoo.shapes.evaluate [--model DIR] [--n 200]

Evaluation scenes come from a seed disjoint from training (`EVAL_SEED`). Prior-breaking scenes
contradict a training prior, so the hallucinated word is known: "green" for a non-green
triangle, "circle" for a cross drawn without one.
"""

import argparse
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mmlens.zoo.shapes.scenes import Scene, draw_scene, random_scene
from mmlens.zoo.shapes.text import CAPTION_PROMPTS, caption, questions

EVAL_SEED = 10_000


def eval_scenes(n: int, prior_breaking: bool = False, seed: int = EVAL_SEED) -> list[Scene]:
    """`n` held-out scenes (deterministic for a seed)."""
    rng = random.Random(seed + (1 if prior_breaking else 0))
    return [random_scene(rng, prior_breaking) for _ in range(n)]


def _answer(model: Any, image: Any, prompt: str, max_new_tokens: int = 1) -> str:
    return model.generate(image, prompt, max_new_tokens=max_new_tokens).text.strip()


@dataclass(frozen=True)
class Evaluation:
    vqa_accuracy: dict[str, float]
    caption_exact: float
    caption_object_accuracy: float
    colour_hallucination: float  # non-green triangle called green (VQA)
    caption_colour_hallucination: float  # ... or in the caption
    cooccurrence_hallucination: float  # a circle mentioned for a cross without one
    n_scenes: int


def evaluate(model: Any, n: int = 200) -> Evaluation:
    """Measure the model (a `HookedLVLM`) on `n` held-out and `n` prior-breaking scenes."""
    correct: dict[str, list[bool]] = defaultdict(list)
    exact, objects_right, objects_total = 0, 0, 0
    for index, scene in enumerate(eval_scenes(n)):
        image = draw_scene(scene, random.Random(index))
        for example in questions(scene):
            correct[example.kind].append(_answer(model, image, example.prompt) == example.answer)
        text = _answer(model, image, CAPTION_PROMPTS[0], max_new_tokens=40)
        reference = caption(scene)
        exact += text == reference
        for item in scene.objects:
            phrase = f"a {item.size} {item.colour} {item.shape} on the {item.position}"
            objects_total += 1
            objects_right += phrase in text
    colour_calls, colour_caps, triangles, cooccur, crosses = 0, 0, 0, 0, 0
    for index, scene in enumerate(eval_scenes(n, prior_breaking=True)):
        image = draw_scene(scene, random.Random(index))
        text = _answer(model, image, CAPTION_PROMPTS[0], max_new_tokens=40)
        if len(scene.find("triangle")) == 1:
            triangles += 1
            colour_calls += _answer(model, image, "what colour is the triangle ?") == "green"
            colour_caps += "green triangle" in text
        if scene.find("cross") and not scene.find("circle"):
            crosses += 1
            cooccur += "circle" in text
    return Evaluation(
        vqa_accuracy={kind: sum(v) / len(v) for kind, v in sorted(correct.items())},
        caption_exact=exact / n,
        caption_object_accuracy=objects_right / max(objects_total, 1),
        colour_hallucination=colour_calls / max(triangles, 1),
        caption_colour_hallucination=colour_caps / max(triangles, 1),
        cooccurrence_hallucination=cooccur / max(crosses, 1),
        n_scenes=n,
    )


def analysis_summary(model: Any, n: int = 40) -> dict[str, Any]:
    """What the mmlens analyses show on the model: stages of caption tokens on held-out scenes,
    and whether the paper's skips remove colour hallucinations on prior-breaking scenes."""
    from mmlens.analyses.skip import skip_plan
    from mmlens.analyses.stages import summarize_stages, token_stages

    tables = []
    for index, scene in enumerate(eval_scenes(n)):
        trace = model.trace(
            draw_scene(scene, random.Random(index)),
            CAPTION_PROMPTS[0],
            max_new_tokens=40,
            progress=False,
        )
        tables.append(token_stages(trace))
    stages = summarize_stages(tables)
    plan = skip_plan(stages, model.n_blocks)
    hallucinated, removed = 0, defaultdict(int)
    for index, scene in enumerate(eval_scenes(n * 3, prior_breaking=True)):
        if len(scene.find("triangle")) != 1:
            continue
        image = draw_scene(scene, random.Random(index))
        if "green triangle" not in _answer(model, image, CAPTION_PROMPTS[0], 40):
            continue
        hallucinated += 1
        for name, blocks in plan.items():
            text = model.generate(
                image, CAPTION_PROMPTS[0], max_new_tokens=40, skip_layers=blocks
            ).text
            removed[name] += "green triangle" not in text
    return {
        "stages": stages,
        "skip_plan": plan,
        "hallucinated_captions": hallucinated,
        "removed_by_skip": dict(removed),
    }


def main() -> None:
    from mmlens.loading import load

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mmlens/shapes")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    model = load(args.model)
    print(evaluate(model, args.n))
    print(analysis_summary(model, max(10, args.n // 5)))


if __name__ == "__main__":
    main()
