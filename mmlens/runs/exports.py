"""Each benchmark's own output file, written from a run's items table, so that `mmlens score` and
the benchmarks' reference tools read a run directly."""

import json
from pathlib import Path

import pandas as pd

from mmlens.runs.store import write_text_atomic

OUTPUT_FILES = {
    "amber": "responses.json",  # AMBER's [{"id", "response"}]
    "shapes": "responses.json",
    "priors": "responses.json",
    "pope": "answers.jsonl",  # LLaVA's evaluation format: question_id, prompt, text
    "coco": "captions.jsonl",  # CHAIR's {"image_id", "caption"}
}


def write_benchmark_output(benchmark: str, items: pd.DataFrame, out: Path) -> Path:
    """The benchmark's output file for the items that ran (failed items are left out)."""
    done = items[items.status == "ok"] if len(items) else items
    path = out / OUTPUT_FILES[benchmark]
    if benchmark in ("amber", "shapes", "priors"):
        rows = [{"id": int(i), "response": t} for i, t in zip(done.id, done.output, strict=True)]
        text = json.dumps(rows, indent=1) + "\n"
    elif benchmark == "pope":
        rows = [
            {"question_id": int(i), "prompt": p, "text": t}
            for i, p, t in zip(done.id, done.prompt, done.output, strict=True)
        ]
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        rows = [
            {"image_id": int(i), "caption": t} for i, t in zip(done.id, done.output, strict=True)
        ]
        text = "".join(json.dumps(row) + "\n" for row in rows)
    write_text_atomic(path, text)
    return path
