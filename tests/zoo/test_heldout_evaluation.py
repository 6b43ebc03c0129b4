"""The held-out experiment's measures, on planted answers (no model needed)."""

import numpy as np
import pandas as pd
import pytest

from mmlens.zoo.heldout import evaluate
from mmlens.zoo.heldout.data import CONTROLS, SUPERVISED
from mmlens.zoo.heldout.evaluate import accuracy, first_colour, one_object_scenes, ratio_table
from mmlens.zoo.priors.priors import PRIOR_COLOURS


def _calls(rows):
    calls = pd.DataFrame(rows, columns=["scene", "set", "object", "drawn", "source", "said"])
    calls["prior"] = calls["object"].map(PRIOR_COLOURS).fillna("")
    calls["first"] = calls["said"]
    calls["generated"] = calls["said"]
    return calls


def test_ratio_against_an_independent_count():
    rows = []
    # 8 cherries (prior red) drawn blue: 4 called red; 2 leaves (prior green) drawn red: 1 green
    rows += [
        (i, "prior", "cherry", "blue", "caption", "red" if i < 4 else "blue") for i in range(8)
    ]
    rows += [(10 + i, "prior", "leaf", "red", "caption", "green" if i else "red") for i in range(2)]
    # controls: 10 boxes drawn white, 1 called red, 1 called green; a red star never counts for red
    rows += [
        (20 + i, "control", "box", "white", "caption", ["red", "green"][i] if i < 2 else "white")
        for i in range(10)
    ]
    rows += [(40, "control", "star", "red", "caption", "red")]
    table = ratio_table(_calls(rows), boot=300).set_index("prior")
    assert table.loc["red", "rate"] == pytest.approx(4 / 8) and table.loc["red", "n"] == 8
    assert (
        table.loc["red", "control"] == pytest.approx(1 / 10) and table.loc["red", "n_control"] == 10
    )
    assert table.loc["green", "control"] == pytest.approx(1 / 11)
    assert table.loc["all", "rate"] == pytest.approx(5 / 10)
    control = 0.8 * (1 / 10) + 0.2 * (1 / 11)
    assert table.loc["all", "control"] == pytest.approx(control)
    assert table.loc["all", "ratio"] == pytest.approx(0.5 / control)
    assert table.loc["all", "ratio_low"] <= 0.5 / control <= table.loc["all", "ratio_high"]
    assert table.loc["all", "diff_low"] > 0


def test_prior_hits_count_per_object_against_its_prior_only():
    rows = [(i, "prior", "cherry", "blue", "caption", "red" if i < 3 else "blue") for i in range(5)]
    rows += [(9, "prior", "cherry", "red", "caption", "red")]  # drawn in its prior: not counted
    rows += [(10, "prior", "leaf", "red", "caption", "")]
    rows += [(11, "control", "box", "red", "caption", "red")]
    table = evaluate.prior_hits(_calls(rows)).set_index("object")
    assert table.loc["cherry", ["hits", "n"]].tolist() == [3, 5]
    assert table.loc["leaf", ["hits", "n"]].tolist() == [0, 1]
    assert table.loc["leaf", "prior"] == "green" and "box" not in table.index


def test_a_prior_object_drawn_in_its_prior_colour_is_not_an_error():
    rows = [(0, "prior", "cherry", "red", "question", "red")]
    rows += [(1, "prior", "cherry", "blue", "question", "blue")]
    rows += [(2, "control", "hat", "blue", "question", "blue")]
    table = ratio_table(_calls(rows), boot=50).set_index("prior")
    assert table.loc["all", "n"] == 1 and table.loc["all", "rate"] == 0.0
    assert np.isnan(table.loc["all", "ratio"])


def test_accuracy_reads_the_expected_answer_per_source():
    rows = [
        (0, "supervised", "cup", "red", "question", "red"),
        (1, "supervised", "cup", "blue", "question", "red"),
        (2, "supervised", "ball", "green", "object", "ball"),
        (3, "supervised", "ball", "green", "count", "one"),
    ]
    table = accuracy(_calls(rows)).set_index("source")
    assert table.loc["question", "accuracy"] == 0.5
    assert table.loc["object", "accuracy"] == 1.0 and table.loc["count", "accuracy"] == 1.0
    assert first_colour("Blue carrot, red") == "blue" and first_colour("a hat.") == ""


def test_the_evaluation_sets_hold_what_they_say():
    scenes = one_object_scenes(30)
    by_set = {kind: [scene.objects[0] for k, scene, _ in scenes if k == kind] for kind in
              ("prior", "control", "supervised")}  # fmt: skip
    assert all(len(objects) == 30 for objects in by_set.values())
    assert all(
        o.name in PRIOR_COLOURS and o.colour != PRIOR_COLOURS[o.name] for o in by_set["prior"]
    )
    assert {o.name for o in by_set["control"]} <= set(CONTROLS)
    assert {o.name for o in by_set["supervised"]} <= set(SUPERVISED)
    assert one_object_scenes(3)[0][1] == one_object_scenes(3)[0][1]  # seeded


def test_held_out_only_palette_leaves_the_supervised_images_as_trained():
    normal = one_object_scenes(4)
    faded = one_object_scenes(4, mode="faded", held_out_only=True)
    for (kind, scene, image), (kind2, scene2, image2) in zip(normal, faded, strict=True):
        assert (kind, scene) == (kind2, scene2)
        same = np.array_equal(np.asarray(image), np.asarray(image2))
        assert same == (kind == "supervised"), kind


def test_held_out_only_without_a_palette_is_one_clear_error(monkeypatch, capsys, tmp_path):
    argv = ["evaluate", "--trained", str(tmp_path / "t.safetensors"), "--held-out-only"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as stop:
        evaluate.main()
    assert stop.value.code == 2
    assert "--held-out-only changes nothing with --palette normal" in capsys.readouterr().err
