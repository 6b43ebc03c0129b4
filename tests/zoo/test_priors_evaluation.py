"""The model card's measures of `mmlens/priors`, on planted answers (no model needed)."""

import pandas as pd
import pytest

from mmlens.zoo.priors.analysis import split_link
from mmlens.zoo.priors.evaluate import (
    accuracy,
    colour_calls,
    first_word,
    prior_errors,
    said_colours,
)
from mmlens.zoo.priors.scenes import Scene, SceneObject


def test_captions_are_read_per_object():
    scene = Scene(
        (SceneObject("cherry", "blue", "left", 10.0), SceneObject("box", "red", "right", 10.0))
    )
    text = (
        "There is a cherry on the left and a box on the right. The cherry is red. The box is red."
    )
    assert said_colours(text, scene) == {"cherry": "red", "box": "red"}
    assert said_colours("There is a cherry.", scene) == {"cherry": "", "box": ""}
    assert first_word(" Blue.\n") == "blue" and first_word("") == ""


def _calls(rows):
    return pd.DataFrame(rows, columns=["scene", "source", "object", "drawn", "said", "prior"])


def test_prior_errors_against_an_independent_count():
    rows = []
    # 4 cherries (prior red) drawn blue: 3 called red
    rows += [(i, "question", "cherry", "blue", "red" if i < 3 else "blue", "red") for i in range(4)]
    # 5 balls (no prior) drawn green: 1 called red; a red ball never counts as a control
    rows += [
        (10 + i, "question", "ball", "green", "red" if i == 0 else "green", "") for i in range(5)
    ]
    rows += [(20, "question", "ball", "red", "red", "")]
    # a leaf (prior green) drawn white, called green; controls for green: cherries and balls not
    # drawn green -> the 4 cherries and the red ball, none called green
    rows += [(30, "question", "leaf", "white", "green", "green")]
    table = prior_errors(_calls(rows)).set_index("prior")
    assert table.loc["red", "rate"] == pytest.approx(3 / 4)
    assert table.loc["red", "n_control"] == 6  # 5 green balls + the white leaf
    assert table.loc["red", "control"] == pytest.approx(1 / 6)
    assert table.loc["green", "rate"] == 1.0 and table.loc["green", "control"] == 0.0
    assert table.loc["all", "rate"] == pytest.approx(4 / 5)
    assert table.loc["all", "control"] == pytest.approx((4 * (1 / 6) + 0.0) / 5)
    assert (
        table.loc["red", "difference_low"] <= 3 / 4 - 1 / 6 <= table.loc["red", "difference_high"]
    )


def test_accuracy_and_calls_from_an_answer_table():
    answers = pd.DataFrame(
        [
            {
                "scene": 0,
                "n_objects": 1,
                "kind": "colour",
                "object": "fish",
                "drawn": "yellow",
                "prompt": "",
                "expected": "Yellow",
                "generated": "Blue",
                "objects": "fish:yellow",
            },
            {
                "scene": 0,
                "n_objects": 1,
                "kind": "count",
                "object": "",
                "drawn": "",
                "prompt": "",
                "expected": "One",
                "generated": "One",
                "objects": "fish:yellow",
            },
            {
                "scene": 0,
                "n_objects": 1,
                "kind": "caption",
                "object": "",
                "drawn": "",
                "prompt": "",
                "expected": "There is a fish. The fish is yellow.",
                "generated": "There is a fish. The fish is blue.",
                "objects": "fish:yellow",
            },
        ]
    )
    table = accuracy(answers).set_index("measure")["value"]
    assert table["VQA colour"] == 0 and table["VQA count"] == 1
    assert table["caption names the object"] == 1 and table["caption gives the right colour"] == 0
    calls = colour_calls(answers)
    assert calls[["source", "said", "prior"]].values.tolist() == [
        ["question", "blue", "blue"],
        ["caption", "blue", "blue"],
    ]
    # the card splits prior errors by scene size: every call says its scene's object count
    assert calls.n_objects.tolist() == [1, 1]


def test_link_is_split_by_the_cause_of_the_error():
    mentions = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "order": [0, 1, 2, 3, 4, 5],
            "object": ["red", "green", "red", "blue", "red", "red"],
            "hallucinated": [True, True, False, False, True, False],
            "has_mutation": [True, False, True, False, False, True],
            "first_mutation": [20, None, 25, None, None, 22],
            "truth_ahead_before_mutation": [True, None, None, None, None, None],
        }
    )
    extra = {
        1: {"prior": "red"},
        2: {"prior": "red"},
        3: {"prior": ""},
        4: {"prior": "blue"},
        5: {"prior": "red"},
        6: {"prior": ""},
    }
    table = split_link(mentions, extra, n_resamples=200)
    rate = table[table.statistic == "P(mutation | hallucinated)"].set_index("hallucinations")
    assert rate.loc["all", "estimate"] == pytest.approx(1 / 3)
    assert rate.loc["prior-driven", "estimate"] == pytest.approx(1 / 2)  # ids 1 and 5
    assert rate.loc["other wrong colours", "estimate"] == 0.0  # id 2 said green for a red prior
