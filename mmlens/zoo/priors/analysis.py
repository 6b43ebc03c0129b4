"""The paper's questions asked of `mmlens/priors`, from a finished `mmlens run priors` (with
`--skips paper`) and its `mmlens link` output.

    mmlens benchmark priors --out BENCH --scenes 300
    mmlens run priors --data BENCH --model mmlens/priors --out RUN --skips paper
    mmlens link RUN --out LINK
    python -m mmlens.zoo.priors.analysis RUN LINK

The link's hallucinated colour words are split by cause: *prior-driven* (the colour said is the
object's language prior) or *other*. Skip settings are compared on the same prior-breaking items.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from mmlens.analyses.link import link_summary
from mmlens.benchmarks.priors import read_priors
from mmlens.runs import read_run
from mmlens.runs.store import run_identity
from mmlens.zoo.priors.evaluate import said_colours
from mmlens.zoo.priors.scenes import Scene, SceneObject


def split_link(mentions: pd.DataFrame, extra: dict[int, dict], **settings: int) -> pd.DataFrame:
    """`link_summary` three times: all hallucinated colour words, only prior-driven ones, only
    the others, each against the correct colour words (column `hallucinations`)."""
    words = mentions.assign(prior=mentions.id.map(lambda i: extra[int(i)]["prior"]))
    driven = words.hallucinated & (words.object == words.prior)
    subsets = {
        "all": words,
        "prior-driven": words[~words.hallucinated | driven],
        "other wrong colours": words[~words.hallucinated | (words.hallucinated & ~driven)],
    }
    tables = [
        link_summary(frame, **settings).assign(hallucinations=name)
        for name, frame in subsets.items()
    ]
    return pd.concat(tables, ignore_index=True)


def colour_outcomes(items: pd.DataFrame, extra: dict[int, dict]) -> pd.DataFrame:
    """Per caption: the colour drawn, the object's prior and the colour the caption gives."""
    rows = []
    for row in items[items.status == "ok"].itertuples():
        info = extra[int(row.id)]
        scene = Scene((SceneObject(info["object"], info["colour"], "middle", 10.0),))
        said = said_colours(str(row.output), scene)[info["object"]]
        rows.append(
            {
                "id": int(row.id),
                "object": info["object"],
                "drawn": info["colour"],
                "prior": info["prior"],
                "drawn_as": info["drawn_as"],
                "said": said,
            }
        )
    return pd.DataFrame(rows)


def skip_effects(run: Path, extra: dict[int, dict]) -> pd.DataFrame:
    """Per setting (original, then each finished skip run): the share of captions with the right
    colour, and on prior-breaking items the share that say the prior colour."""
    settings = {"original": (run, [])}
    for sub in sorted((run / "skips").glob("*/")):
        if (sub / "items.parquet").is_file():
            settings[sub.name] = (sub, run_identity(sub).get("skip_layers", []))
    rows = []
    for name, (folder, blocks) in settings.items():
        outcomes = colour_outcomes(read_run(folder)[0], extra)
        breaking = outcomes[outcomes.drawn_as == "prior-breaking"]
        rows.append(
            {
                "setting": name,
                "skipped_blocks": ",".join(map(str, blocks)),
                "colour_right": (outcomes.said == outcomes.drawn).mean(),
                "prior_said_when_breaking": (breaking.said == breaking.prior).mean(),
                "no_colour_given": (outcomes.said == "").mean(),
                "n": len(outcomes),
                "n_breaking": len(breaking),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("link", type=Path)
    parser.add_argument("--n-resamples", type=int, default=10_000)
    args = parser.parse_args()
    identity = run_identity(args.run)
    extra = {item.id: item.extra for item in read_priors(identity["data"])}
    mentions = pd.read_csv(args.link / "mentions.csv")
    pd.set_option("display.width", 200)
    print(split_link(mentions, extra, n_resamples=args.n_resamples).round(3).to_string(index=False))
    print(skip_effects(args.run, extra).round(3).to_string(index=False))
    stages = mentions.critical_layer.describe()
    print(json.dumps({"critical_layer": stages.round(2).to_dict()}))


if __name__ == "__main__":
    main()
