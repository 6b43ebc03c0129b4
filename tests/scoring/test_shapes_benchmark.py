"""The built-in benchmark: seeded, versioned, in AMBER's format, true to its scenes, and scored
end to end on the shipped model's own captions."""

import json
import re

import pytest

import mmlens
from mmlens.benchmarks import AmberData, read_amber, read_shapes, score_amber
from mmlens.benchmarks.shapes import VERSION, build_shapes_benchmark, write_shapes_benchmark
from mmlens.cli import main
from mmlens.errors import BenchmarkDataError, ConfigError
from mmlens.zoo.shapes.scenes import SHAPES


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_shapes_benchmark(tmp_path_factory.mktemp("b") / "shapes", n_scenes=24, seed=5)


def test_seeded_and_versioned(bench, tmp_path):
    again = write_shapes_benchmark(tmp_path / "again", n_scenes=24, seed=5)
    for name in ("annotations.json", "query/query_discriminative.json", "mmlens_benchmark.json"):
        assert (bench / name).read_bytes() == (again / name).read_bytes()
    assert (bench / "images/shapes_3.png").read_bytes() == (
        again / "images/shapes_3.png"
    ).read_bytes()
    other = build_shapes_benchmark(24, seed=6)["annotations"]
    assert other != json.loads((bench / "annotations.json").read_text())
    meta = json.loads((bench / "mmlens_benchmark.json").read_text())
    assert meta["version"] == VERSION and meta["seed"] == 5 and len(meta["scenes"]) == 24
    assert [s["drawn_as"] for s in meta["scenes"][:2]] == ["control", "prior-breaking"]


def test_ground_truth_follows_the_scenes(bench):
    meta = json.loads((bench / "mmlens_benchmark.json").read_text())
    items = read_shapes(bench)
    assert not items.skipped and all(item.image.is_file() for item in items)
    for item in items:
        scene = meta["scenes"][item.extra["scene"]]
        shapes = [o["shape"] for o in scene["objects"]]
        colours = {o["shape"]: o["colour"] for o in scene["objects"]}
        if item.task == "generative":
            assert set(item.truth) == set(shapes)
            assert set(item.extra["hallu"]) == set(SHAPES) - set(shapes)
            continue
        if match := re.fullmatch(r"is there a (\w+) in the image \?", item.prompt):
            assert item.truth == ("yes" if match[1] in shapes else "no")
        elif match := re.fullmatch(r"is the (\w+) (\w+) \?", item.prompt):
            assert item.truth == ("yes" if colours[match[1]] == match[2] else "no")
        elif match := re.fullmatch(r"is the (\w+) left of the (\w+) \?", item.prompt):
            left = shapes.index(match[1]) < shapes.index(match[2])
            assert item.truth == ("yes" if left else "no")
        else:
            number = re.fullmatch(r"(?:is|are) there (\w+) objects? \?", item.prompt)[1]
            assert item.truth == (
                "yes" if ["one", "two", "three"].index(number) + 1 == len(shapes) else "no"
            )
    priors = [item for item in items if item.extra["probe"] == "prior"]
    assert priors and all(item.truth == "no" for item in priors)
    assert {item.extra["prior_broken"] for item in priors} <= {
        "triangle-colour",
        "cross-without-circle",
    }
    # AMBER's own reader takes it as it is
    assert len(read_amber(bench, images=bench / "images")) == len(items)


def test_refuses_to_overwrite_and_checks_its_version(bench, tmp_path):
    with pytest.raises(ConfigError, match="already exists"):
        write_shapes_benchmark(bench, n_scenes=4)
    meta = json.loads((bench / "mmlens_benchmark.json").read_text())
    copy = write_shapes_benchmark(tmp_path / "copy", n_scenes=4)
    (copy / "mmlens_benchmark.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(BenchmarkDataError, match="version 99"):
        read_shapes(copy)


def test_cli_writes_it(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["benchmark", "shapes", "--out", str(out), "--scenes", "6"]) == 0
    assert "6 caption queries" in capsys.readouterr().out
    assert main(["benchmark", "shapes", "--out", str(out), "--scenes", "6"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["benchmark", "shapes", "--out", str(out), "--scenes", "6", "--force"]) == 0


@pytest.mark.slow
def test_shipped_model_scored_end_to_end(bench, pipeline, tmp_path, capsys):
    """Captions of `mmlens/shapes` scored with AMBER's metrics equal a direct count of shape
    words in them (every shape word is a noun the scorer must find)."""
    model = mmlens.load("mmlens/shapes")
    items = [item for item in read_shapes(bench) if item.task == "generative"]
    responses = [
        (item.id, model.generate(item.image, item.prompt, max_new_tokens=40).text.strip())
        for item in items
    ]
    data = AmberData.load(bench)
    scores = score_amber(responses, data, pipeline)
    mentions, wrong, covered, hallucinating = 0, 0, 0, 0
    for item, (_, text) in zip(items, responses, strict=True):
        words = [w for w in re.findall(r"[a-z]+", text) if w in SHAPES]  # captions say "a ..."
        mentions += len(words)
        wrong += sum(w not in item.truth for w in words)
        covered += len(set(words) & set(item.truth))
        hallucinating += any(w not in item.truth for w in words)
    assert mentions > len(items)  # the model names shapes
    assert scores.metrics["chair"] == pytest.approx(wrong / mentions)
    assert scores.metrics["cover"] == pytest.approx(covered / sum(len(i.truth) for i in items))
    assert scores.metrics["hal"] == pytest.approx(hallucinating / len(items))
    # ... and through the CLI, from AMBER's response file format
    path = tmp_path / "responses.json"
    path.write_text(json.dumps([{"id": i, "response": r} for i, r in responses]))
    assert main(["score", "amber", "--amber", str(bench), "--responses", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["chair"] == pytest.approx(scores.metrics["chair"])
    assert printed["f1"] is None and printed["n_generative"] == len(items)
