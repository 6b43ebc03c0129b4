"""Skip experiments: the plan from stages, the comparison metrics, and real skipped generations."""

import difflib

import pytest
from _support import DATA

from mmlens.analyses.hallucination import ObjectVocabulary, hallucinated_objects
from mmlens.analyses.skip import (
    compare_generations,
    edit_distance,
    skip_experiments,
    skip_html,
    skip_plan,
    text_similarity,
)
from mmlens.analyses.stages import TraceStages

AMBER = DATA / "amber"


def _stages(critical, mutations=()):
    return TraceStages(critical, tuple(mutations), 10, 0.5, {}, {})


def test_paper_skip_sets_for_llava_shapes():
    plan = skip_plan(_stages(18, (29,)), n_blocks=32)
    # mutation pair 29 = layers 29 -> 30, made by block 29; layer 18 feeds it: blocks 18..28 skipped
    assert plan["skip.1"] == list(range(18, 29))
    assert plan["skip.2"] == [29]
    assert plan["skip.3"] == list(range(18, 27))  # blocks 27..31 = the last 5 layers run
    assert skip_plan(_stages(18), 32) == {"skip.3": list(range(18, 27))}
    assert skip_plan(_stages(None), 32) == {}


def test_edit_distance_and_similarity():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3, 4], [2, 3, 4, 1]) == 2
    a, b = "a dog on the grass", "a sheep on the grass"
    assert text_similarity(a, b) == pytest.approx(
        difflib.SequenceMatcher(a=a.split(), b=b.split()).ratio()
    )
    assert text_similarity(a, a) == 1.0


def test_hallucinated_objects_with_amber_vocabulary():
    vocabulary = ObjectVocabulary.from_amber(AMBER / "relation.json")
    text = "A man walks two dogs on the grass near a car."
    assert set(vocabulary.mentioned(text)) >= {"man", "dog", "grass", "car"}
    assert hallucinated_objects(text, ["man", "dog", "grass"], vocabulary) == ["car"]
    # AMBER synonyms count as the object: "ground" is listed under "grass"
    assert "car" not in hallucinated_objects("a car on the ground", ["car"], vocabulary)


def test_compare_tracks_hallucinations():
    vocabulary = ObjectVocabulary.from_words(["dog", "sheep", "grass"])
    table = compare_generations(
        [1, 2, 3],
        "a dog on grass",
        {"skip.2": ([29], [1, 4, 3], "a sheep on grass")},
        truth=["sheep", "grass"],
        vocabulary=vocabulary,
    )
    row = table.set_index("name").loc["skip.2"]
    assert row.token_edit_distance == 1
    assert row.disappeared == ["dog"] and row.appeared == [] and row.hallucinated == []
    page = skip_html(table)
    assert "<mark>sheep</mark>" in page and "skipped blocks [29]" in page


def test_skip_experiments_really_skip(tiny, photo):
    stages = _stages(1, (2,))  # mutation pair 2: layers 2 -> 3, made by block 2
    table = skip_experiments(
        tiny, photo, "describe the image .", stages=stages, extra={"mine": [0]}, max_new_tokens=8
    )
    # 4 blocks: skip.1 = block 1, skip.2 = block 2; skip.3 would be empty and is left out
    assert list(table.name) == ["original", "skip.1", "skip.2", "mine"]
    assert list(table.skip_blocks) == [(), (1,), (2,), (0,)]
    for row in table.itertuples():
        expected = tiny.generate(
            photo, "describe the image .", max_new_tokens=8, skip_layers=list(row.skip_blocks)
        )
        assert row.text == expected.text


def test_nothing_to_skip_is_a_clear_error(tiny, photo):
    from mmlens.errors import ConfigError

    with pytest.raises(ConfigError, match="Nothing to skip.*--blocks"):
        skip_experiments(tiny, photo, "describe", stages=None, max_new_tokens=2)
