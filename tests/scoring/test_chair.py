"""CHAIR on a small COCO-format annotation folder built here, worked out by hand from the
definitions of the Python 3 port (OPERA's chair.py)."""

import json

import pytest

from mmlens.benchmarks import CocoTruth, caption_objects, read_captions, read_coco, score_chair
from mmlens.benchmarks.chair import CocoVocabulary
from mmlens.errors import BenchmarkDataError

CATEGORIES = {1: "person", 17: "cat", 18: "dog", 62: "chair", 70: "toilet", 88: "teddy bear"}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco")
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in (1, 2, 3)]
    instances = {
        "categories": [{"id": k, "name": v} for k, v in CATEGORIES.items()],
        "images": images,
        "annotations": [
            {"image_id": 1, "category_id": 18},
            {"image_id": 1, "category_id": 1},
            {"image_id": 1, "category_id": 18},
            {"image_id": 2, "category_id": 70},
        ],
    }
    captions = {
        "images": images,
        "annotations": [
            {"image_id": 1, "caption": "A man walking a dog on a leash."},
            {"image_id": 1, "caption": "A teddy bear sitting on a chair."},
            {"image_id": 2, "caption": "A white toilet with the seat up."},
            {"image_id": 3, "caption": "An empty street at night."},
        ],
    }
    (folder / "instances_val2014.json").write_text(json.dumps(instances))
    (folder / "captions_val2014.json").write_text(json.dumps(captions))
    return folder


def test_vocabulary_is_coco_with_the_references_quirks():
    vocabulary = CocoVocabulary.default()
    assert len(vocabulary.classes) == 80
    assert vocabulary.synonyms["puppy"] == "dog" and vocabulary.synonyms["sofa"] == "couch"
    assert vocabulary.synonyms["hot dog"] == "hot dog"
    # split on ", " keeps a leading space after the double spaces in the reference's list
    assert "cheesecake" not in vocabulary.synonyms and " cheesecake" in vocabulary.synonyms
    assert vocabulary.double_words["baby cat"] == "cat"
    assert vocabulary.double_words["passenger jet"] == "jet"
    assert vocabulary.double_words["toilet seat"] == "toilet"


@pytest.mark.parametrize(
    ("caption", "objects"),
    [
        ("Two dogs chase a puppy.", ["dog", "dog"]),  # plurals, synonyms, repeats kept
        ("A hot dog and a teddy bear.", ["hot dog", "teddy bear"]),  # two-word objects
        ("A baby elephant with an adult giraffe.", ["elephant", "giraffe"]),  # not "person"
        ("A baby in a crib.", ["person"]),
        ("A passenger jet at the gate.", ["airplane"]),
        ("The seat of the toilet is up.", ["toilet"]),  # "seat" is not a chair next to a toilet
        ("A man on a seat.", ["person", "chair"]),
        ("A slice of cheesecake.", []),  # the reference's list never matches it
        ("", []),
    ],
)
def test_caption_objects(pipeline, caption, objects):
    assert caption_objects(caption, pipeline).objects == objects


def test_truth_joins_instances_and_reference_captions(coco):
    truth = CocoTruth(coco)
    assert truth.objects(1) == {"dog", "person", "teddy bear", "chair"}
    assert truth.objects(2) == {"toilet"}  # "the seat" is dropped beside "toilet"
    assert truth.objects(3) == frozenset()
    assert 999 not in truth


def test_chair_metrics_by_hand(coco, tmp_path):
    captions = [
        (1, "Two dogs and a baby cat play near a hot dog stand. A man sits on a sofa."),
        (2, "A toilet seat next to a sink."),
        (3, "A quiet street."),
        (999, "A dog."),  # no annotation: counted, not scored
    ]
    scores = score_chair(captions, CocoTruth(coco))
    rows = scores.items.set_index("image_id")
    assert rows.loc[1, "objects"] == ["dog", "cat", "hot dog", "person", "couch"]
    assert rows.loc[1, "hallucinated"] == ["cat", "hot dog", "couch"]
    assert rows.loc[2, "hallucinated"] == ["sink"]
    assert list(rows.n_words) == [18, 7, 4]
    m = scores.metrics
    assert m["chair_s"] == pytest.approx(2 / 3)
    assert m["chair_i"] == pytest.approx(4 / 7)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["len"] == pytest.approx(29 / 3)
    assert scores.counts == {"n_scored": 3, "n_no_annotation": 1}
    assert "1 captions have an image_id with no COCO annotation" in scores.notes[0]
    # the same with ground truth given as a plain mapping
    plain = score_chair(captions[:3], {1: CocoTruth(coco).objects(1), 2: {"toilet"}, 3: set()})
    assert plain.metrics == {k: v for k, v in m.items()}


def test_items_for_runs(coco, tmp_path):
    (tmp_path / "COCO_val2014_000000000001.jpg").write_bytes(b"")
    items = read_coco(CocoTruth(coco), images=tmp_path, image_ids=[1, 2, 7])
    assert [item.id for item in items] == [1]
    assert items[0].truth == ("chair", "dog", "person", "teddy bear")
    assert sorted(s.reason.split(":")[0] for s in items.skipped) == [
        "image missing",
        "no annotation",
    ]


def test_bad_inputs(coco, tmp_path):
    with pytest.raises(BenchmarkDataError, match="no instances_val2014.json"):
        CocoTruth(tmp_path)
    (tmp_path / "instances_val2014.json").write_text('{"images": []}')
    (tmp_path / "captions_val2014.json").write_text('{"annotations": []}')
    with pytest.raises(BenchmarkDataError, match="not COCO instance annotations"):
        CocoTruth(tmp_path)
    bad = tmp_path / "caps.jsonl"
    bad.write_text('{"image_id": 1, "text": "a dog"}\n')
    with pytest.raises(BenchmarkDataError, match="no 'caption'"):
        read_captions(bad)
    bad.write_text('[{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": "x"}]')
    assert read_captions(bad) == [(1, "a dog"), (2, "x")]  # a JSON list works too
    with pytest.raises(BenchmarkDataError, match="No caption could be scored"):
        score_chair([(5, "a dog")], CocoTruth(coco))


def test_dataframe_of_captions(coco):
    import pandas as pd

    frame = pd.DataFrame({"image_id": [2, 2], "caption": ["A dog and a dog.", "A toilet."]})
    scores = score_chair(frame, CocoTruth(coco))
    assert scores.metrics["chair_i"] == pytest.approx(2 / 3)  # both dog mentions count
    assert scores.metrics["chair_s"] == pytest.approx(1 / 2)
