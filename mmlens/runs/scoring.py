"""A run's benchmark metrics, from its items table and the benchmark data that run.json names."""

from pathlib import Path
from typing import Any

import pandas as pd

from mmlens.benchmarks.scores import Scores
from mmlens.errors import ConfigError


def score_run(identity: dict[str, Any], items: pd.DataFrame, answer_rule: str = "amber") -> Scores:
    """Score the items that ran (failed ones are left out) as the benchmark defines its metrics.
    `answer_rule` is AMBER's yes-no reading ("amber": exactly Yes/No; "pope")."""
    benchmark, data = identity.get("benchmark"), identity.get("data")
    if not data or not Path(data).exists():
        raise ConfigError(
            f"The run's benchmark data {data!r} is not there any more; metrics need it "
            "(put it back, or pass --no-metrics)."
        )
    done = items[items.status == "ok"]
    if benchmark in ("amber", "shapes", "priors"):
        from mmlens.benchmarks.amber import AmberData, score_amber

        responses = list(zip(done.id.astype(int), done.output.astype(str), strict=True))
        return score_amber(responses, AmberData.load(data), answer_rule=answer_rule)
    if benchmark == "pope":
        from mmlens.benchmarks.pope import read_pope, score_pope

        answers = dict(zip(done.id.astype(int), done.output.astype(str), strict=True))
        return score_pope(read_pope(data), answers)
    if benchmark == "coco":
        from mmlens.benchmarks.chair import CocoTruth, score_chair

        captions = list(zip(done.id.astype(int), done.output.astype(str), strict=True))
        return score_chair(captions, CocoTruth(data))
    raise ConfigError(f"A run of benchmark {benchmark!r} cannot be scored.")
