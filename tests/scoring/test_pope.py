"""POPE: its answer parsing, its metrics worked out by hand, and reading the real question files."""

import json
from pathlib import Path

import pytest
from _support import DATA

from mmlens.benchmarks import ItemSet, pope_answer, read_pope, read_pope_answers, score_pope
from mmlens.benchmarks.items import BenchmarkItem
from mmlens.errors import BenchmarkDataError

POPE = DATA / "pope" / "coco"  # the first 60 questions of each file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),
        ("yes, there is a dog.", "yes"),
        ("No", "no"),
        ("no.", "no"),
        ("NO", "yes"),  # only "No", "not" and "no" count, case-sensitively
        ("Not really", "yes"),
        ("There is not a dog", "no"),
        ("No, there isn't.", "no"),
        ("Yes. There is no cat, though.", "yes"),  # only the first sentence is read
        ("I don't think so", "yes"),  # "don't" is not one of the words
        ("", "yes"),  # empty answers count as yes
        ("no, there is", "no"),  # commas are removed before splitting on spaces
        ("no,there is", "yes"),  # ... so "no,there" becomes the one word "nothere"
    ],
)
def test_pope_answer_parsing(text, expected):
    assert pope_answer(text) == expected


def _items(labels: list[str]) -> ItemSet:
    return ItemSet(
        tuple(
            BenchmarkItem("pope", i + 1, Path(f"{i}.jpg"), "q", "discriminative", "random", label)
            for i, label in enumerate(labels)
        )
    )


def test_metrics_by_hand():
    # labels y y y n n n n ; answers y y n y n n n -> TP 2, FN 1, FP 1, TN 3
    items = _items(["yes", "yes", "yes", "no", "no", "no", "no"])
    texts = ["Yes", "Yes.", "No", "yes", "No", "not", "no"]
    scores = score_pope(items, {i + 1: t for i, t in enumerate(texts)})
    m = scores.metrics
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(3 / 7)
    assert scores.counts == {"n_scored": 7, "n_unanswered": 0, "n_skipped": 0}
    assert list(scores.items.answer) == ["yes", "yes", "no", "yes", "no", "no", "no"]


def test_undefined_metrics_are_none_not_a_crash():
    scores = score_pope(_items(["no", "no"]), {1: "No", 2: "no"})
    assert scores.metrics["precision"] is None and scores.metrics["recall"] is None
    assert scores.metrics["f1"] is None and scores.metrics["accuracy"] == 1.0
    assert json.loads(json.dumps(scores.to_dict()))["precision"] is None


def test_answers_are_paired_by_id_and_missing_ones_reported():
    items = _items(["yes", "no", "yes"])
    scores = score_pope(items, {3: "yes", 1: "no"})  # out of order, one missing
    assert scores.counts["n_unanswered"] == 1 and scores.counts["n_scored"] == 2
    assert list(scores.items.question_id) == [1, 3]
    assert scores.metrics["accuracy"] == 0.5
    assert "1 of 3 questions have no answer" in scores.notes[0]


def test_unknown_answer_ids_are_an_error():
    with pytest.raises(BenchmarkDataError, match="not among the questions"):
        score_pope(_items(["yes"]), {1: "yes", 99: "no"})


def test_real_question_files_read():
    for subset in ("random", "popular", "adversarial"):
        items = read_pope(POPE / f"coco_pope_{subset}.json")
        assert len(items) == 60 and not items.skipped  # CRLF lines too (popular, adversarial)
        assert [item.id for item in items] == list(range(1, 61))
        assert {item.kind for item in items} == {subset}
        assert sum(item.truth == "yes" for item in items) == 30
        first = items[0]
        assert first.prompt.startswith("Is there a") and first.image.name.startswith("COCO_val2014")


def test_missing_images_are_skipped_and_counted(tmp_path):
    lines = [
        {"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"},
        {"question_id": 2, "image": "b.jpg", "text": "Is there a cat?", "label": "no"},
    ]
    (tmp_path / "q.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (tmp_path / "a.jpg").write_bytes(b"")
    items = read_pope(tmp_path / "q.json", images=tmp_path)
    assert [i.id for i in items] == [1] and items.skipped[0].id == 2
    assert items.summary() == "1 items; 1 skipped (image missing: 1)"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question_id": 1, "image": "a.jpg", "text": "t", "label": "yes"}\nnot json\n', "line 2"),
        ('{"question_id": 1, "image": "a.jpg", "text": "t"}\n', "no 'label'"),
        ('{"question_id": 1, "image": "a.jpg", "text": "t", "label": "maybe"}\n', "'maybe'"),
        ('{"question_id": "x", "image": "a.jpg", "text": "t", "label": "no"}\n', "'x'"),
    ],
)
def test_malformed_question_files_name_the_line(tmp_path, content, message):
    (tmp_path / "q.json").write_text(content)
    with pytest.raises(BenchmarkDataError, match=message):
        read_pope(tmp_path / "q.json")


def test_answers_file_errors(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"question_id": 1, "text": "yes"}\n{"question_id": 1, "text": "no"}\n')
    with pytest.raises(BenchmarkDataError, match="answered twice"):
        read_pope_answers(path)
    path.write_text('{"question_id": 1, "answer": "yes"}\n')
    with pytest.raises(BenchmarkDataError, match="no 'text'"):
        read_pope_answers(path)
    with pytest.raises(BenchmarkDataError, match="not found"):
        read_pope_answers(tmp_path / "missing.jsonl")


def test_dataframes_for_notebooks():
    import pandas as pd

    items = _items(["yes", "no"])
    frame = pd.DataFrame({"question_id": [2, 1], "text": ["No", "Yes"]})
    assert score_pope(items, frame).metrics["accuracy"] == 1.0
    with pytest.raises(BenchmarkDataError, match="no column 'text'"):
        score_pope(items, frame.rename(columns={"text": "answer"}))
    with pytest.raises(BenchmarkDataError, match="answered twice"):
        score_pope(items, pd.concat([frame, frame]))
