"""`mmlens run` on each benchmark's files (tiny data sets built here), then `mmlens score` on the
benchmark output file the run wrote."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlens.cli import main


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg", "AMBER_1.jpg"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _run(benchmark, data, images, out, model):
    args = ["run", benchmark, "--data", str(data), "--images", str(images), "--out", str(out)]
    return main([*args, "--model", str(model), "--max-new-tokens", "3", "--quiet"])


def test_pope(tmp_path, images, checkpoints, capsys):
    questions = tmp_path / "coco_pope_random.json"
    rows = [
        {"question_id": i, "image": f"COCO_val2014_{image:012d}.jpg", "text": t, "label": label}
        for i, image, t, label in [
            (1, 1, "Is there a dog?", "yes"),
            (2, 2, "A cat?", "no"),
            (3, 9, "A car?", "no"),
        ]
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _run("pope", questions, images, tmp_path / "run", checkpoints["gqa"]) == 0
    out = capsys.readouterr().out
    assert "3 items (2 ok, 1 failed)" in out and "image missing" in out
    answers = tmp_path / "run" / "answers.jsonl"
    assert [json.loads(line)["question_id"] for line in answers.read_text().splitlines()] == [1, 2]
    assert (
        main(["score", "pope", "--questions", str(questions), "--answers", str(answers), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_scored"] == 2


def test_coco(tmp_path, images, checkpoints, capsys):
    coco = tmp_path / "annotations"
    coco.mkdir()
    listed = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in (1, 2)]
    instances = {"categories": [{"id": 18, "name": "dog"}], "images": listed, "annotations": []}
    (coco / "instances_val2014.json").write_text(json.dumps(instances))
    captions = [{"image_id": 1, "caption": "A dog on a sofa."}]
    (coco / "captions_val2014.json").write_text(json.dumps({"annotations": captions}))
    assert _run("coco", coco, images, tmp_path / "run", checkpoints["gqa"]) == 0
    items = pd.read_parquet(tmp_path / "run" / "items.parquet")
    assert list(items.id) == [1, 2] and json.loads(items.truth[0]) == ["couch", "dog"]
    capsys.readouterr()
    caps = tmp_path / "run" / "captions.jsonl"
    assert main(["score", "chair", "--captions", str(caps), "--coco", str(coco), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_scored"] == 2


def test_amber_needs_images_and_refuses_other_settings(
    tmp_path, amber_dir, images, checkpoints, capsys
):
    out = tmp_path / "run"
    assert main(["run", "amber", "--data", str(amber_dir), "--out", str(out)]) == 2
    assert "needs --images" in capsys.readouterr().err
    assert _run("amber", amber_dir, images, out, checkpoints["gqa"]) == 0
    queries = [
        q
        for f in ("generative", "discriminative")
        for q in json.loads((amber_dir / "query" / f"query_{f}.json").read_text())
    ]
    first = sum(q["image"] == "AMBER_1.jpg" for q in queries)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == first  # AMBER_1.jpg's caption query and yes-no questions ...
    assert summary["failed"] == len(queries) - first  # ... every other item's image is missing
    assert summary["errors"]["image missing"]["count"] == len(queries) - first
    assert "image missing" in capsys.readouterr().out
    again = ["run", "amber", "--data", str(amber_dir), "--images", str(images), "--out", str(out)]
    assert main([*again, "--model", str(checkpoints["gqa"]), "--max-new-tokens", "4"]) == 2
    assert "max_new_tokens: 3 there, 4 now" in capsys.readouterr().err


def test_batch_size_reaches_the_run(tmp_path, capsys):
    from mmlens.benchmarks import write_shapes_benchmark

    bench = write_shapes_benchmark(tmp_path / "bench", n_scenes=2)
    out = tmp_path / "run"
    args = ["run", "shapes", "--data", str(bench), "--out", str(out), "--quiet", "--limit", "5"]
    assert main([*args, "--batch-size", "0"]) == 2
    assert "batch_size=0" in capsys.readouterr().err
    assert main([*args, "--batch-size", "4", "--max-new-tokens", "2"]) == 0
    items = pd.read_parquet(out / "items.parquet")
    assert list(items.batch_size) == [4, 4, 4, 4, 1]


def test_built_in_benchmark_without_data_is_written_into_the_run(tmp_path, capsys):
    """The first command a newcomer types works: no --data, the default benchmark is written
    into OUT/benchmark; a prefix (--limit) mixes captions and yes-no questions, scene by scene;
    the summary names only what happened."""
    out = tmp_path / "run"
    args = ["run", "shapes", "--out", str(out), "--limit", "12", "--max-new-tokens", "4"]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote the built-in shapes benchmark (default scenes and seed) to {out}" in printed
    assert "12 items: 12 traced, in" in printed
    assert "already done" not in printed and "failed," not in printed and "reader" not in printed
    items = pd.read_parquet(out / "items.parquet")
    assert set(items.task) == {"generative", "discriminative"}
    scenes = [json.loads(extra)["scene"] for extra in items.extra]
    assert scenes == sorted(scenes) and items.task.iloc[0] == "generative"
    assert json.loads((out / "run.json").read_text())["data"] == str((out / "benchmark").resolve())
    assert main([*args, "--quiet"]) == 0  # resumes: the benchmark is there, nothing rewritten
    printed = capsys.readouterr().out
    assert "wrote the built-in" not in printed and "12 items: 12 already done, 0 traced" in printed
    assert main(["run", "amber", "--out", str(tmp_path / "a")]) == 2
    assert "needs --data (AMBER's data folder)" in capsys.readouterr().err
    assert main(["run", "shapes", "--out", str(tmp_path / "t"), "--threads", "0"]) == 2
    assert "--threads 0: give a number" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # refused before the benchmark was written


def test_the_priors_benchmark_is_written_the_same_way(tmp_path, capsys):
    from mmlens.benchmarks.priors import read_priors
    from mmlens.cli.run import _write_built_in

    _write_built_in("priors", tmp_path / "benchmark")
    assert "wrote the built-in priors benchmark" in capsys.readouterr().out
    items = read_priors(tmp_path / "benchmark")
    assert len(items) == 200 and {i.extra["drawn_as"] for i in items[:2]} == {
        "control",
        "prior-breaking",
    }  # fmt: skip  (any prefix mixes control and prior-breaking scenes)
