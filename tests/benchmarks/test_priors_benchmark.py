"""The `mmlens/priors` caption benchmark: files, reading, and `mmlens run priors` + `mmlens link`
judging colour words (run here with the fast shapes model: the wiring, not the model, is tested)."""

import json

import pandas as pd
import pytest

from mmlens.benchmarks.priors import read_priors, write_priors_benchmark
from mmlens.cli import main
from mmlens.errors import BenchmarkDataError
from mmlens.zoo.priors.priors import PRIOR_COLOURS
from mmlens.zoo.priors.scenes import COLOURS


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_priors_benchmark(tmp_path_factory.mktemp("bench") / "priors", n_scenes=6)


def test_items_carry_exact_colour_truth(bench):
    items = read_priors(bench)
    assert len(items) == 6 and not items.skipped
    for item in items:
        assert item.truth == (item.extra["object"], item.extra["colour"])
        assert item.image.is_file() and item.prompt == "Describe the image."
        if item.extra["drawn_as"] == "prior-breaking":
            assert item.extra["prior"] == PRIOR_COLOURS[item.extra["object"]]
            assert item.extra["colour"] != item.extra["prior"]
    assert sum(i.extra["drawn_as"] == "prior-breaking" for i in items) == 3
    assert json.loads((bench / "colours.json").read_text()) == list(COLOURS)


def test_other_versions_are_refused(bench, tmp_path):
    copy = tmp_path / "old"
    copy.mkdir()
    meta = json.loads((bench / "mmlens_benchmark.json").read_text())
    (copy / "mmlens_benchmark.json").write_text(json.dumps({**meta, "version": 0}))
    with pytest.raises(BenchmarkDataError, match="mmlens benchmark priors"):
        read_priors(copy)


@pytest.mark.slow
def test_run_and_link_judge_colour_words(bench, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "link"
    args = ["run", "priors", "--data", str(bench), "--out", str(run), "--model", "mmlens/shapes"]
    assert main([*args, "--max-new-tokens", "20", "--batch-size", "3", "--quiet"]) == 0
    assert main(["link", str(run), "--out", str(out), "--n-resamples", "100", "--no-metrics"]) == 0
    capsys.readouterr()
    mentions = pd.read_csv(out / "mentions.csv")
    items = {item.id: item for item in read_priors(bench)}
    assert len(mentions) and set(mentions.object) <= set(COLOURS)
    for row in mentions.itertuples():
        assert row.hallucinated == (row.object != items[row.id].extra["colour"])
