"""What is true of each item's image, as probe labels: which objects are present or absent.

From a run's or an activation store's items table (`truth` and `extra` as JSON): a caption
item's truth lists the objects in its image (AMBER, COCO, the built-in benchmarks) and AMBER's
and the built-in benchmarks' `hallu` lists objects known to be absent; a yes-no question about
an object ("is there a X in the image?", as POPE and the built-in benchmarks ask it) says
whether X is there. Every item of one image shares what is known of that image.
"""

import json
import re

import pandas as pd

from mmlens.errors import ConfigError

QUESTION = re.compile(r"is there (?:a |an )?(?P<object>.+?) in the (?:image|picture)", re.I)


def object_labels(items: pd.DataFrame) -> pd.DataFrame:
    """One row per item and object known present or absent in its image: id, image, object,
    present (bool). Objects about which an image says nothing are left out, not guessed."""
    missing = {"id", "image", "task", "prompt", "truth", "extra"} - set(items.columns)
    if missing:
        raise ConfigError(f"an items table needs {sorted(missing)} for labels.")
    known: dict[tuple[str, str], bool] = {}
    for item in items.itertuples():
        truth = json.loads(item.truth) if isinstance(item.truth, str) else item.truth
        extra = json.loads(item.extra) if isinstance(item.extra, str) and item.extra else {}
        if item.task == "generative" and isinstance(truth, list):
            for name in truth:
                known[(item.image, str(name).lower())] = True
            for name in extra.get("hallu", []) or []:
                known.setdefault((item.image, str(name).lower()), False)
        elif isinstance(truth, str) and truth.lower() in ("yes", "no"):
            asked = QUESTION.search(item.prompt)
            if asked:
                known[(item.image, asked["object"].lower())] = truth.lower() == "yes"
    rows = [
        {"id": item.id, "image": item.image, "object": name, "present": present}
        for item in items.itertuples()
        for (image, name), present in known.items()
        if image == item.image
    ]
    if not rows:
        raise ConfigError(
            "No item says which objects its image holds (no caption truth, no 'is there a X' "
            "question): this benchmark gives no object labels."
        )
    return pd.DataFrame(rows).sort_values(["id", "object"], kind="stable").reset_index(drop=True)
