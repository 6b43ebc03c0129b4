"""`mmlens score`: tables by default, one JSON object with --json, errors as one line."""

import json

import pytest
from _support import DATA

from mmlens.cli import main

POPE = DATA / "pope" / "coco" / "coco_pope_adversarial.json"  # its first 60 questions


@pytest.fixture
def pope_answers(tmp_path):
    questions = [json.loads(line) for line in POPE.read_text().splitlines()[:8]]
    texts = ["Yes, there is.", "No.", "yes", "no", "There is not.", "Yes", "No", "Yes"]
    path = tmp_path / "answers.jsonl"
    rows = [
        {"question_id": q["question_id"], "text": t} for q, t in zip(questions, texts, strict=True)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path, [q["label"] for q in questions], texts


def test_pope_json(pope_answers, capsys):
    path, labels, texts = pope_answers
    assert main(["score", "pope", "--questions", str(POPE), "--answers", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result)[:5] == ["accuracy", "precision", "recall", "f1", "yes_ratio"]
    said_yes = [
        ("No" not in t and "not" not in t and "no" not in t.split(".")[0].split()) for t in texts
    ]
    right = sum(
        (s and label == "yes") or (not s and label == "no")
        for s, label in zip(said_yes, labels, strict=True)
    )
    assert result["accuracy"] == pytest.approx(right / 8)
    assert result["yes_ratio"] == pytest.approx(sum(said_yes) / 8)
    assert result["n_scored"] == 8 and result["n_unanswered"] == 52
    assert all(0 <= result[k] <= 1 for k in ("accuracy", "precision", "recall", "f1"))


def test_pope_table_and_details(pope_answers, tmp_path, capsys):
    path, _, _ = pope_answers
    details = tmp_path / "items.jsonl"
    args = ["score", "pope", "--questions", str(POPE), "--answers", str(path)]
    assert main([*args, "--details", str(details)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("POPE (rates in %)") and "yes_ratio" in out and "52 of 60" in out
    import pandas as pd

    assert len(pd.read_json(details, lines=True)) == 8
    assert main([*args, "--details", str(details)]) == 2  # exists: refused without --force
    assert "--force" in capsys.readouterr().err


def test_amber_json_keys(amber_dir, tmp_path, capsys):
    path = tmp_path / "responses.json"
    path.write_text(json.dumps([{"id": 1005, "response": "Yes"}, {"id": 1006, "response": "No"}]))
    assert (
        main(["score", "amber", "--amber", str(amber_dir), "--responses", str(path), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    expected = [
        "chair",
        "cover",
        "hal",
        "cog",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "amber_score",
    ]
    assert list(result)[:9] == expected
    assert result["chair"] is None and result["accuracy"] == 1.0


def test_chair_json_keys(tmp_path, capsys):
    coco = tmp_path / "coco"
    coco.mkdir()
    images = [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg"}]
    instances = {"categories": [{"id": 18, "name": "dog"}], "images": images}
    instances["annotations"] = [{"image_id": 7, "category_id": 18}]
    (coco / "instances_val2014.json").write_text(json.dumps(instances))
    (coco / "captions_val2014.json").write_text(json.dumps({"annotations": []}))
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"image_id": 7, "caption": "A dog chases a cat."}\n')
    assert main(["score", "chair", "--captions", str(captions), "--coco", str(coco), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {k: result[k] for k in ("chair_s", "chair_i", "recall", "len")} == {
        "chair_s": 1.0,
        "chair_i": 0.5,
        "recall": 1.0,
        "len": 6.0,
    }


@pytest.mark.parametrize(
    "args",
    [
        ["score", "pope", "--questions", "missing.json", "--answers", "a.jsonl"],
        ["score", "amber", "--amber", "nowhere", "--responses", "r.json"],
        ["score", "chair", "--captions", "c.jsonl", "--coco", "nowhere"],
    ],
)
def test_bad_paths_are_one_line_errors(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_text('{"image_id": 1, "caption": "x"}\n')
    (tmp_path / "r.json").write_text("[]")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmlens: error:") and len(err.splitlines()) == 1


def test_help_says_what_auto_synonyms_and_the_offline_pipeline_do(capsys):
    """The help text's claims, checked against what the code does here (no en_core_web_lg)."""
    from mmlens.benchmarks.similarity import ExactMatch, near_synonyms

    with pytest.raises(SystemExit):
        main(["score", "amber", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto (en_core_web_lg if installed, else exact matching)" in text
    assert "perceptron tagger" in text and "spaCy's small tagger" not in text
    assert isinstance(near_synonyms("auto"), ExactMatch)
