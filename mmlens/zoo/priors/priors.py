"""The language model's colour priors, measured the way the model is asked (text only, no image).

For each object name and prompt format of `text.PRIOR_FORMATS`, the next-token probability of
each colour word (summed over its case and leading-space variants) is normalised over the colours
of `scenes.COLOURS`: the *share*. SmolLM2 favours "red" for nearly everything, so a share alone
says little; the *excess* subtracts the median share of that colour over all candidate objects.
An object has a prior colour when, in the caption format (where the language model most wants to
name a colour), its top-share colour is also its top-excess colour and exceeds by `PRIOR_EXCESS`.
"""

from typing import Any

import pandas as pd
import torch

from mmlens.zoo.priors.scenes import COLOURS
from mmlens.zoo.priors.text import PRIOR_FORMATS, article

PRIOR_EXCESS = 0.2


def colour_token_ids(tokenizer: Any) -> dict[str, list[int]]:
    """Colour -> the single tokens that spell it ('red', ' red', 'Red', ' Red')."""
    found = {}
    for colour in COLOURS:
        ids = set()
        for variant in (colour, f" {colour}", colour.capitalize(), f" {colour.capitalize()}"):
            tokens = tokenizer(variant, add_special_tokens=False).input_ids
            if len(tokens) == 1:
                ids.add(tokens[0])
        found[colour] = sorted(ids)
    return found


@torch.no_grad()
def colour_priors(language_model: Any, tokenizer: Any, names: list[str]) -> pd.DataFrame:
    """One row per (object, format, colour): probability, share and excess, plus `mass` (the total
    probability of the colour words, which shows how colour-like the next token is at all)."""
    ids = colour_token_ids(tokenizer)
    rows = []
    for name in names:
        for fmt, template in PRIOR_FORMATS.items():
            text = template.format(name=name, article=article(name))
            encoded = tokenizer(text, return_tensors="pt")
            probs = language_model(**encoded).logits[0, -1].float().softmax(-1)
            per_colour = {c: float(probs[ids[c]].sum()) for c in COLOURS}
            mass = sum(per_colour.values())
            for colour, p in per_colour.items():
                rows.append(
                    {
                        "object": name,
                        "format": fmt,
                        "colour": colour,
                        "probability": p,
                        "mass": mass,
                        "share": p / mass,
                    }
                )
    table = pd.DataFrame(rows)
    baseline = table.groupby(["format", "colour"])["share"].transform("median")
    table["excess"] = table["share"] - baseline
    return table


def prior_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per object: its top-share and top-excess colour in each format, and its prior
    colour (empty when it has none)."""
    rows = []
    for name, group in table.groupby("object", sort=False):
        row: dict[str, Any] = {"object": name}
        for fmt in PRIOR_FORMATS:
            part = group[group["format"] == fmt].set_index("colour")
            top, most = part["share"].idxmax(), part["excess"].idxmax()
            row |= {
                f"{fmt}_mass": part["mass"].iloc[0],
                f"{fmt}_top": top,
                f"{fmt}_share": part.loc[top, "share"],
                f"{fmt}_excess_colour": most,
                f"{fmt}_excess": part.loc[most, "excess"],
            }
        real = row["caption_top"] == row["caption_excess_colour"] and (
            row["caption_excess"] >= PRIOR_EXCESS
        )
        row["prior_colour"] = row["caption_top"] if real else ""
        rows.append(row)
    return pd.DataFrame(rows)


#: `prior_table`'s prior colours as measured on the GGUF (a test re-measures them); objects
#: without an entry have no prior. Evaluation and the model card read them from here.
PRIOR_COLOURS: dict[str, str] = {
    "strawberry": "red",
    "cherry": "red",
    "tomato": "red",
    "leaf": "green",
    "broccoli": "green",
    "banana": "green",
    "snowman": "white",
    "cloud": "white",
    "umbrella": "white",
    "fish": "blue",
}
