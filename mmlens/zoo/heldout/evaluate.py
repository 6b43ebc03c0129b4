"""Held-out evaluation of `mmlens/heldout`: does the language model's prior win where colour was
never supervised?

    OMP_NUM_THREADS=1 python -m mmlens.zoo.heldout.evaluate --trained FILE --n 200

Three sets of one-object scenes, from a seed disjoint from training's (`EVAL_SEED`), each `--n`
scenes: *prior* (a held-out prior object drawn in one of the five colours that are not its prior),
*control* (a held-out non-prior object, `data.CONTROLS`, in any colour) and *supervised* (carrot,
ball or cup, in any colour). Each object is asked in two ways, greedy, first word read:

- `question`: "What colour is the {name}? Answer with one word.";
- `caption`: the caption prompt with the answer teacher-forced to "There is a {name}. The {name}
  is", as a caption would state it.

The prior rate is how often a prior object drawn against its prior is given its prior colour; the
control rate for colour C is how often a held-out control object not drawn in C is called C, and
the pooled control weights each colour's control by how many prior objects have that prior (as
`priors.evaluate` does). The 95 % intervals of the ratio and the difference come from a bootstrap
that resamples scenes (here one scene is one object) within each set. The supervised set gives
one-object accuracy (object, count, colour); `prior_hits` counts the prior's wins per object.
Accuracy and the prior-vs-control table are also given from a forced choice among the six colour
words at the first answer position (`decode.forced_colours`), where the model cannot escape to a
word that is not a colour.
`--two N` adds N two-object scenes (any objects) read from the one-word colour question and the
same comparison.
"""

import argparse
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmlens.zoo.heldout.data import CONTROLS, HELD_OUT, SUPERVISED
from mmlens.zoo.heldout.decode import greedy
from mmlens.zoo.priors import train as base
from mmlens.zoo.priors.build import END_TOKEN, build_model, build_processor, load_trained
from mmlens.zoo.priors.evaluate import OFF_PALETTE, first_word
from mmlens.zoo.priors.language_model import load_language_model
from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import (
    COLOURS,
    DRAWERS,
    Scene,
    SceneObject,
    draw_scene,
    faded,
    random_scene,
)
from mmlens.zoo.priors.text import CAPTION_PROMPT, ONE_WORD, article

EVAL_SEED = 20_000
PRIOR_NAMES = tuple(PRIOR_COLOURS)
#: The elicitations whose answer is a colour.
COLOUR_SOURCES = ("question", "caption")


def load_model(trained: Path | None = None, checkpoint: Path | None = None) -> tuple[Any, Any]:
    """The assembled model in memory (nothing written): SmolLM2 plus trained parts from a
    `trained.safetensors` file or from an alignment checkpoint (`align.pt`) of `train.py`."""
    language_model, tokenizer = load_language_model()
    processor = build_processor(tokenizer)
    model = build_model(language_model, processor)
    del language_model
    if trained is not None:
        load_trained(model, trained)
    elif checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.model.vision_tower.load_state_dict(state["tower"])
        model.model.multi_modal_projector.load_state_dict(state["projector"])
    return model.eval(), processor


def _object(rng: random.Random, name: str, colour: str) -> SceneObject:
    return SceneObject(
        name, colour, "middle", rng.uniform(9.0, 12.0), rng.randint(-3, 3), rng.randint(-8, 8)
    )


def palette(mode: str) -> dict[str, tuple[int, int, int]]:
    """Colour name -> RGB. `normal`: the training palette; `faded`: the same colours mixed half
    way to mid-grey (weaker colour evidence); `off`: `priors.evaluate.OFF_PALETTE`, colours never
    trained (orange, purple, pink, brown), so the image says nothing the model can name."""
    if mode == "off":
        return dict(OFF_PALETTE)
    if mode == "faded":
        return {c: faded(rgb) for c, rgb in COLOURS.items()}
    return dict(COLOURS)


def one_object_scenes(
    n: int, seed: int = EVAL_SEED, mode: str = "normal", held_out_only: bool = False
) -> list[tuple[str, Scene, Any]]:
    """(set, scene, image) for `n` scenes of each set (see the module's docstring), drawn with
    `palette(mode)`; with `held_out_only`, the supervised set keeps the training palette."""
    rng = random.Random(seed)
    found = []
    for kind in ("prior", "control", "supervised"):
        colours = palette("normal" if held_out_only and kind == "supervised" else mode)
        for _ in range(n):
            if kind == "prior":
                name = rng.choice(PRIOR_NAMES)
                colour = rng.choice([c for c in colours if c != PRIOR_COLOURS[name]])
            else:
                name = rng.choice(CONTROLS if kind == "control" else SUPERVISED)
                colour = rng.choice(list(colours))
            scene = Scene((_object(rng, name, colour),))
            image = draw_scene(scene, random.Random(rng.randint(0, 10**9)), colours)
            found.append((kind, scene, image))
    return found


def elicitation_ids(processor: Any, name: str, source: str) -> list[int]:
    """Token ids up to the point where the model should say a colour (or an object, a count)."""
    tokenizer = processor.tokenizer
    if source == "caption":
        prefix = f" There is {article(name)} {name}. The {name} is"
        return base.prompt_ids(processor, CAPTION_PROMPT) + list(
            tokenizer(prefix, add_special_tokens=False).input_ids
        )
    prompt = {
        "question": f"What colour is the {name}? {ONE_WORD}",
        "object": f"What object is in the image? {ONE_WORD}",
        "count": f"How many objects are there? {ONE_WORD}",
    }[source]
    return base.prompt_ids(processor, prompt)


def first_colour(text: str) -> str:
    """The first colour word of `text` ('' if none)."""
    return next((w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOURS), "")


def _read(calls: pd.DataFrame, texts: list[str], forced: list[str]) -> None:
    """Add the generated text (cut at the end token), its first word, `said` (for colour
    elicitations the first colour word of the continuation, as the issue reads them, otherwise the
    first word) and `forced` (the forced colour choice, `decode.forced_colours`; '' for other
    elicitations)."""
    texts = [t.split(END_TOKEN)[0] for t in texts]
    calls["generated"] = texts
    calls["first"] = [first_word(t) for t in texts]
    colour = calls["source"].isin(COLOUR_SOURCES)
    calls["said"] = np.where(colour, [first_colour(t) for t in texts], calls["first"])
    calls["forced"] = np.where(colour, forced, "")


def forced_choice(calls: pd.DataFrame) -> pd.DataFrame:
    """`calls` with the forced colour choice as what colour elicitations said."""
    calls = calls.copy()
    colour = calls["source"].isin(COLOUR_SOURCES)
    calls.loc[colour, "said"] = calls.loc[colour, "forced"]
    return calls


def one_object_calls(
    model: Any,
    processor: Any,
    n: int,
    seed: int = EVAL_SEED,
    mode: str = "normal",
    held_out_only: bool = False,
) -> pd.DataFrame:
    """One row per scene and elicitation: set, object, drawn colour, what was said."""
    meta, jobs = [], []
    scenes = one_object_scenes(n, seed, mode, held_out_only)
    for index, (kind, scene, image) in enumerate(scenes):
        obj = scene.objects[0]
        sources = list(COLOUR_SOURCES)
        if kind == "supervised":
            sources += ["object", "count"]
        for source in sources:
            meta.append((index, kind, obj.name, obj.colour, source))
            jobs.append((elicitation_ids(processor, obj.name, source), image))
    texts, forced = greedy(model, processor, jobs)
    calls = pd.DataFrame(meta, columns=["scene", "set", "object", "drawn", "source"])
    _read(calls, texts, forced)
    calls["prior"] = calls["object"].map(PRIOR_COLOURS).fillna("")
    return calls


def two_object_calls(model: Any, processor: Any, n: int, seed: int = EVAL_SEED + 1) -> pd.DataFrame:
    """Colour questions about both objects of `n` random two-object scenes (any objects)."""
    rng = random.Random(seed)
    meta, jobs = [], []
    index = 0
    while index < n:
        scene = random_scene(rng, tuple(DRAWERS))
        if len(scene.objects) != 2:
            continue
        image = draw_scene(scene, random.Random(rng.randint(0, 10**9)))
        for obj in scene.objects:
            kind = (
                "prior" if obj.name in PRIOR_COLOURS else "control" if obj.name in CONTROLS else ""
            )
            kind = kind or "supervised"
            meta.append((index, kind, obj.name, obj.colour, "question"))
            jobs.append((elicitation_ids(processor, obj.name, "question"), image))
        index += 1
    texts, forced = greedy(model, processor, jobs)
    calls = pd.DataFrame(meta, columns=["scene", "set", "object", "drawn", "source"])
    _read(calls, texts, forced)
    calls["prior"] = calls["object"].map(PRIOR_COLOURS).fillna("")
    # only prior objects drawn against their prior count as prior-breaking
    keep = (calls["set"] != "prior") | (calls["drawn"] != calls["prior"])
    return calls[keep].reset_index(drop=True)


def _rates(
    prior: np.ndarray, hit: np.ndarray, drawn: np.ndarray, said: np.ndarray, colours: list[str]
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Pooled prior rate, weighted control rate, and per colour (prior rate, control rate).

    `prior`, `hit`: each prior-breaking object's prior colour and whether that colour was said;
    `drawn`, `said`: each control object's drawn and said colour."""
    per, weighted = {}, 0.0
    for colour in colours:
        mine = prior == colour
        if not mine.any():
            continue
        others = drawn != colour
        control = float((said[others] == colour).mean()) if others.any() else float("nan")
        per[colour] = (float(hit[mine].mean()), control)
        weighted += control * mine.mean()
    return float(hit.mean()), weighted, per


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, inf where only b is 0, nan where both are."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a > 0, np.inf, np.nan))


def ratio_table(
    calls: pd.DataFrame, control_set: str = "control", boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per source and prior colour (and "all"): prior rate, control rate, their ratio and
    difference, with 95 % percentile-bootstrap intervals that resample scenes (with replacement)
    within the prior set and within the control set, independently."""
    rows = []
    gen = np.random.default_rng(seed)
    for source, part in calls.groupby("source"):
        prior_rows = part[(part["set"] == "prior") & (part["drawn"] != part["prior"])]
        control_rows = part[part["set"] == control_set]
        if not len(prior_rows) or not len(control_rows):
            continue
        prior = prior_rows["prior"].to_numpy()
        hit = (prior_rows["said"] == prior_rows["prior"]).to_numpy()
        drawn, said = control_rows["drawn"].to_numpy(), control_rows["said"].to_numpy()
        colours = sorted(set(prior))
        rate, control, per = _rates(prior, hit, drawn, said, colours)
        draws: dict[str, list[tuple[float, float]]] = {c: [] for c in [*colours, "all"]}
        for _ in range(boot):
            i = gen.integers(0, len(prior), len(prior))
            j = gen.integers(0, len(said), len(said))
            r, k, per_boot = _rates(prior[i], hit[i], drawn[j], said[j], colours)
            draws["all"].append((r, k))
            for colour, pair in per_boot.items():
                draws[colour].append(pair)
        for colour in [*colours, "all"]:
            value, base_rate = (rate, control) if colour == "all" else per[colour]
            n = len(prior) if colour == "all" else int((prior == colour).sum())
            n_control = len(said) if colour == "all" else int((drawn != colour).sum())
            pairs = np.array(draws[colour], float)
            ratio_low, ratio_high = _interval(_ratio(pairs[:, 0], pairs[:, 1]))
            diff_low, diff_high = _interval(pairs[:, 0] - pairs[:, 1])
            rows.append(
                {
                    "source": source,
                    "prior": colour,
                    "rate": value,
                    "hits": int(round(value * n)),
                    "n": n,
                    "control": base_rate,
                    "n_control": n_control,
                    "ratio": float(_ratio(np.array(value), np.array(base_rate))),
                    "ratio_low": ratio_low,
                    "ratio_high": ratio_high,
                    "diff_low": diff_low,
                    "diff_high": diff_high,
                }
            )
    return pd.DataFrame(rows)


def prior_hits(calls: pd.DataFrame) -> pd.DataFrame:
    """Per prior object and source: how many of its scenes drawn against its prior were given the
    prior colour (`hits`) out of `n`, to see which objects carry a pooled ratio."""
    rows = calls[(calls["set"] == "prior") & (calls["drawn"] != calls["prior"])]
    rows = rows.assign(hit=rows["said"] == rows["prior"])
    table = rows.groupby(["source", "object", "prior"])["hit"].agg(hits="sum", n="count")
    return table.reset_index().astype({"hits": int})


def accuracy(calls: pd.DataFrame) -> pd.DataFrame:
    """Per set and source: how often the answer is right (the drawn colour for `question` and
    `caption`, read as the first colour word, and as the first word; the object's name for
    `object`; 'one' for `count`), and how often the first word, or any word, is a colour."""
    rows = []
    for (kind, source), group in calls.groupby(["set", "source"]):
        expected = {"object": group["object"], "count": pd.Series("one", index=group.index)}.get(
            source, group["drawn"]
        )
        rows.append(
            {
                "set": kind,
                "source": source,
                "accuracy": float((group["said"] == expected).mean()),
                "accuracy_first_word": float((group["first"] == expected).mean()),
                "first_word_colour": float(group["first"].isin(list(COLOURS)).mean()),
                "any_colour": float(group["generated"].map(first_colour).ne("").mean()),
                "n": len(group),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--trained", type=Path, default=None, help="trained.safetensors")
    parser.add_argument("--checkpoint", type=Path, default=None, help="or an align.pt")
    parser.add_argument("--n", type=int, default=200, help="scenes per one-object set")
    parser.add_argument("--two", type=int, default=0, help="two-object scenes (0: none)")
    parser.add_argument("--boot", type=int, default=2000)
    parser.add_argument(
        "--palette",
        choices=("normal", "faded", "off"),
        default="normal",
        help="colours of the one-object scenes (see `palette`)",
    )
    parser.add_argument(
        "--held-out-only",
        action="store_true",
        help="--palette for the prior and control sets only (supervised: training colours)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder for calls CSVs")
    args = parser.parse_args()
    if (args.trained is None) == (args.checkpoint is None):
        parser.error("give exactly one of --trained and --checkpoint")
    if args.held_out_only and args.palette == "normal":
        parser.error("--held-out-only changes nothing with --palette normal; add --palette faded")
    torch.set_num_threads(args.threads)
    started = time.time()
    model, processor = load_model(args.trained, args.checkpoint)
    calls = one_object_calls(
        model, processor, args.n, mode=args.palette, held_out_only=args.held_out_only
    )
    pd.set_option("display.width", 200)
    print(f"held out: {', '.join(HELD_OUT)}; colour supervised on {', '.join(SUPERVISED)}")
    where = " (held-out sets only)" if args.held_out_only else ""
    print(f"palette: {args.palette}{where}; {args.n} one-object scenes per set")
    print(accuracy(calls).round(3).to_string(index=False))
    print("\nOne-object scenes, prior vs held-out control (box, star, hat):")
    print(ratio_table(calls, boot=args.boot).round(3).to_string(index=False))
    print("\nOne-object scenes, prior vs supervised objects as the control (reference):")
    print(ratio_table(calls, "supervised", boot=args.boot).round(3).to_string(index=False))
    print("\nPrior objects given their prior colour, per object:")
    print(prior_hits(calls).to_string(index=False))
    forced = forced_choice(calls)
    print("\nForced choice among the six colour words (first answer position):")
    print(accuracy(forced)[["set", "source", "accuracy", "n"]].round(3).to_string(index=False))
    print(ratio_table(forced, boot=args.boot).round(3).to_string(index=False))
    print("\nWhat is said, per set and source (top words):")
    for (kind, source), group in calls.groupby(["set", "source"]):
        top = group["generated"].str.strip().value_counts().head(8).to_dict()
        print(f"  {kind:10s} {source:8s} {top}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        calls.to_csv(args.out / "calls_one.csv", index=False)
    if args.two:
        two = two_object_calls(model, processor, args.two)
        print(f"\nTwo-object scenes ({args.two}), colour question:")
        print(accuracy(two).round(3).to_string(index=False))
        print(ratio_table(two, boot=args.boot).round(3).to_string(index=False))
        print("forced choice:")
        print(ratio_table(forced_choice(two), boot=args.boot).round(3).to_string(index=False))
        if args.out:
            two.to_csv(args.out / "calls_two.csv", index=False)
    print(f"\n{time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
