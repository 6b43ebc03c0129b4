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


# --- POPE in LLaVA's layout (tests/data/pope/llava, built from the POPE subset) -----------------

LLAVA = DATA / "pope" / "llava"
COCO = DATA / "pope" / "coco"
LLAVA_ARGS = [
    "score",
    "pope",
    "--annotation-dir",
    str(COCO),
    "--question-file",
    str(LLAVA / "llava_pope_test.jsonl"),
    "--result-file",
    str(LLAVA / "answers.jsonl"),
]
# worked out by hand in tests/scoring/test_pope.py::test_llava_layout_by_hand (TP, FP, TN, FN)
BY_HAND = {"random": (25, 4, 26, 5), "popular": (24, 6, 24, 6), "adversarial": (20, 10, 20, 10)}


def test_pope_llava_layout_table(capsys):
    assert main(LLAVA_ARGS) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "POPE per split (rates in %; n = answers scored)"
    assert lines[1].split() == ["split", "accuracy", "precision", "recall", "f1", "yes_ratio", "n"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert list(rows) == ["random", "popular", "adversarial"]
    for split, (tp, fp, tn, fn) in BY_HAND.items():
        expected = [
            (tp + tn) / 60,
            tp / (tp + fp),
            tp / (tp + fn),
            2 * tp / (2 * tp + fp + fn),
            (tp + fp) / 60,
        ]
        assert rows[split] == [f"{100 * x:.2f}" for x in expected] + ["60"]
    mean = (50 / 59 + 48 / 60 + 40 / 60) / 3
    assert (
        lines[5] == f"  mean F1 over random, popular, adversarial: {100 * mean:.2f} (180 answers)"
    )
    assert len(lines) == 6  # no notes: every question answered, paired by id


def test_pope_llava_layout_json_and_details(tmp_path, capsys):
    details = tmp_path / "items.jsonl"
    assert main([*LLAVA_ARGS, "--json", "--details", str(details)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == [
        "splits",
        "mean_f1",
        "mean_f1_over",
        "n_scored",
        "n_unanswered",
        "paired_by",
    ]
    assert list(result["splits"]) == ["random", "popular", "adversarial"]
    for split, (tp, fp, tn, fn) in BY_HAND.items():
        metrics = result["splits"][split]
        assert list(metrics)[:5] == ["accuracy", "precision", "recall", "f1", "yes_ratio"]
        assert metrics["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert metrics["accuracy"] == pytest.approx((tp + tn) / 60)
        assert (metrics["n_scored"], metrics["n_unanswered"]) == (60, 0)
    assert result["mean_f1"] == pytest.approx((50 / 59 + 48 / 60 + 40 / 60) / 3)
    assert result["mean_f1_over"] == ["random", "popular", "adversarial"]
    assert (result["n_scored"], result["n_unanswered"]) == (180, 0)
    assert set(result["paired_by"].values()) == {"question_id"}
    import pandas as pd

    frame = pd.read_json(details, lines=True)
    assert len(frame) == 180 and set(frame.split) == {"random", "popular", "adversarial"}
    assert frame.correct.sum() == sum(tp + tn for tp, _, tn, _ in BY_HAND.values())


def test_pope_llava_layout_takes_popes_option_names_too(capsys):
    args = ["score", "pope", "--annotation-dir", str(COCO), "--json"]
    args += ["--questions", str(LLAVA / "llava_pope_test.jsonl")]
    assert main([*args, "--answers", str(LLAVA / "answers.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["n_scored"] == 180


def _llava_case(tmp_path, case):
    """(question file, answer file, annotation dir) with one thing wrong."""
    questions = [json.loads(x) for x in (LLAVA / "llava_pope_test.jsonl").read_text().splitlines()]
    answers = [json.loads(x) for x in (LLAVA / "answers.jsonl").read_text().splitlines()]
    labels = COCO
    if case == "no category":
        questions = [{k: v for k, v in q.items() if k != "category"} for q in questions]
    elif case == "unknown ids":
        answers.append({"question_id": 30_000_001, "text": "Yes"})
    elif case == "missing split":
        labels = tmp_path / "coco"
        labels.mkdir()
        for split in ("random", "adversarial"):
            name = f"coco_pope_{split}.json"
            (labels / name).write_bytes((COCO / name).read_bytes())
    elif case == "empty answers":
        answers = []
    q, a = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    q.write_text("".join(json.dumps(x) + "\n" for x in questions))
    a.write_text("".join(json.dumps(x) + "\n" for x in answers))
    return q, a, labels


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no category", "q.jsonl question 1 has no 'category'"),
        ("unknown ids", "1 answers have a question_id that is not in the question file"),
        ("missing split", "no label file for split 'popular'"),
        ("empty answers", "a.jsonl holds no answers"),
    ],
)
def test_pope_llava_layout_errors_are_one_line(tmp_path, capsys, case, message):
    q, a, labels = _llava_case(tmp_path, case)
    args = ["score", "pope", "--annotation-dir", str(labels)]
    assert main([*args, "--question-file", str(q), "--result-file", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmlens: error:") and len(err.strip().splitlines()) == 1
    assert message in err


def test_llava_question_file_without_annotation_dir_says_what_to_add(capsys):
    args = ["score", "pope", "--questions", str(LLAVA / "llava_pope_test.jsonl")]
    assert main([*args, "--answers", str(LLAVA / "answers.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "LLaVA's question file" in err and "--annotation-dir" in err
    assert len(err.strip().splitlines()) == 1


def test_pope_help_shows_both_layouts(capsys):
    with pytest.raises(SystemExit):
        main(["score", "pope", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--annotation-dir", "--question-file", "--result-file", "--questions"):
        assert option in text
    assert "averaged over random, popular and adversarial" in text
