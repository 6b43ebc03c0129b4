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
    with pytest.raises(BenchmarkDataError, match="not among the questions") as error:
        score_pope(_items(["yes"]), {1: "yes", 99: "no"})
    assert "LLaVA" not in str(error.value)
    with pytest.raises(BenchmarkDataError, match="10,000,000 up are LLaVA's numbering"):
        score_pope(_items(["yes"]), {1: "yes", 10_000_001: "no"})  # LLaVA's random split


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


# --- LLaVA's layout: one question file for all splits, scored per split -------------------------

LLAVA = DATA / "pope" / "llava"  # built from POPE by tests/data/pope/make_llava_layout.py
QUESTIONS, ANSWERS = LLAVA / "llava_pope_test.jsonl", LLAVA / "answers.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def eval_pope_transcribed(annotation_dir, question_file, result_file) -> dict[str, dict]:
    """haotian-liu/LLaVA llava/eval/eval_pope.py (commit c121f04), line for line, returning what
    it prints per category instead of printing it."""
    import os

    def eval_pope(answers, label_file):
        label_list = [json.loads(q)["label"] for q in open(label_file)]  # noqa: SIM115
        for answer in answers:
            text = answer["text"]
            if text.find(".") != -1:
                text = text.split(".")[0]
            text = text.replace(",", "")
            words = text.split(" ")
            if "No" in words or "not" in words or "no" in words:
                answer["text"] = "no"
            else:
                answer["text"] = "yes"
        for i in range(len(label_list)):
            if label_list[i] == "no":
                label_list[i] = 0
            else:
                label_list[i] = 1
        pred_list = []
        for answer in answers:
            if answer["text"] == "no":
                pred_list.append(0)
            else:
                pred_list.append(1)
        pos, neg = 1, 0
        yes_ratio = pred_list.count(1) / len(pred_list)
        TP, TN, FP, FN = 0, 0, 0, 0
        for pred, label in zip(pred_list, label_list):  # noqa: B905 (zip truncates there too)
            if pred == pos and label == pos:
                TP += 1
            elif pred == pos and label == neg:
                FP += 1
            elif pred == neg and label == neg:
                TN += 1
            elif pred == neg and label == pos:
                FN += 1
        precision = float(TP) / float(TP + FP)
        recall = float(TP) / float(TP + FN)
        f1 = 2 * precision * recall / (precision + recall)
        acc = (TP + TN) / (TP + TN + FP + FN)
        return {
            "counts": (TP, FP, TN, FN),
            "accuracy": acc,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "yes_ratio": yes_ratio,
            "n": len(answers),
        }

    questions = [json.loads(line) for line in open(question_file)]  # noqa: SIM115
    questions = {question["question_id"]: question for question in questions}
    answers = [json.loads(q) for q in open(result_file)]  # noqa: SIM115
    printed = {}
    for file in os.listdir(annotation_dir):
        assert file.startswith("coco_pope_")
        assert file.endswith(".json")
        category = file[10:-5]
        cur_answers = [x for x in answers if questions[x["question_id"]]["category"] == category]
        printed[category] = eval_pope(cur_answers, os.path.join(annotation_dir, file))
    return printed


def test_llava_layout_files_are_what_the_builder_writes():
    import runpy

    build = runpy.run_path(str(DATA / "pope" / "make_llava_layout.py"))["build"]
    assert build() == (QUESTIONS.read_text(), ANSWERS.read_text())
    rows = _lines(QUESTIONS)
    assert [r["category"] for r in rows[::60]] == ["adversarial", "random", "popular"]
    assert [r["question_id"] for r in rows[::60]] == [1, 10_000_001, 20_000_001]
    assert all(
        r["text"].endswith("\nAnswer the question using a single word or phrase.") for r in rows
    )
    assert sum("imange" in r["text"] for r in rows) == 4  # LLaVA's file keeps POPE's old spelling


def test_llava_layout_by_hand():
    """Labels alternate yes, no, ... in all three files; the made-up answers flip the reading of
    every 7th (random), 5th (popular), 3rd (adversarial) question from position 0. random:
    positions 0, 7, ..., 56 flipped, 5 of them even (yes -> no: FN) and 4 odd (FP); popular:
    0, 5, ..., 55, 6 FN and 6 FP; adversarial: 0, 3, ..., 57, 10 FN and 10 FP."""
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    data = read_llava_pope(QUESTIONS, POPE)
    assert data.splits == ("random", "popular", "adversarial")
    assert data.paired_by == {s: "question_id" for s in ("adversarial", "random", "popular")}
    assert data.n_labels == {"adversarial": 60, "random": 60, "popular": 60} and not data.notes
    scores = score_llava_pope(data, read_pope_answers(ANSWERS))
    expected = {  # TP, FP, TN, FN
        "random": (25, 4, 26, 5),
        "popular": (24, 6, 24, 6),
        "adversarial": (20, 10, 20, 10),
    }
    for split, (tp, fp, tn, fn) in expected.items():
        m = scores.splits[split].metrics
        assert m["accuracy"] == pytest.approx((tp + tn) / 60)
        assert m["precision"] == pytest.approx(tp / (tp + fp))
        assert m["recall"] == pytest.approx(tp / (tp + fn))
        assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert m["yes_ratio"] == pytest.approx((tp + fp) / 60)
        assert scores.splits[split].counts == {"n_scored": 60, "n_unanswered": 0}
    assert scores.mean_f1 == pytest.approx((50 / 59 + 48 / 60 + 40 / 60) / 3)
    frame = scores.items
    assert len(frame) == 180 and list(frame.columns[:3]) == ["split", "question_id", "label_id"]
    assert frame.set_index("question_id").loc[10_000_011, "label_id"] == 11


def test_llava_layout_against_eval_pope_transcription(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    reference = eval_pope_transcribed(POPE, QUESTIONS, ANSWERS)
    data = read_llava_pope(QUESTIONS, POPE)
    scores = score_llava_pope(data, read_pope_answers(ANSWERS))
    assert set(reference) == set(scores.splits)
    for split, printed in reference.items():
        ours = scores.splits[split]
        for name in ("accuracy", "precision", "recall", "f1", "yes_ratio"):
            assert ours.metrics[name] == pytest.approx(printed[name]), (split, name)
        assert ours.counts["n_scored"] == printed["n"]
    papers = [reference[s]["f1"] for s in ("random", "popular", "adversarial")]
    assert scores.mean_f1 == pytest.approx(sum(papers) / 3)

    # answers in another order: eval_pope.py pairs by position and changes its numbers; mmlens
    # pairs by question_id and does not
    rows = _lines(ANSWERS)
    shuffled = _write(tmp_path / "shuffled.jsonl", rows[::-1])
    moved = eval_pope_transcribed(POPE, QUESTIONS, shuffled)
    assert moved["random"]["accuracy"] != pytest.approx(reference["random"]["accuracy"])
    again = score_llava_pope(data, read_pope_answers(shuffled))
    assert again.to_dict() == scores.to_dict()


def test_llava_layout_unanswered_questions_are_counted_not_mispaired(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    rows = _lines(ANSWERS)
    kept = [r for i, r in enumerate(rows) if not (60 <= i < 70)]  # random's first 10 unanswered
    scores = score_llava_pope(
        read_llava_pope(QUESTIONS, POPE), read_pope_answers(_write(tmp_path / "a.jsonl", kept))
    )
    random = scores.splits["random"]
    assert random.counts == {"n_scored": 50, "n_unanswered": 10}
    # positions 10..59: flipped 14, 21, 28, 35, 42, 49, 56 -> FN at 14, 28, 42, 56; FP at 21, 35, 49
    assert random.metrics["accuracy"] == pytest.approx(43 / 50)
    assert random.metrics["recall"] == pytest.approx(21 / 25)
    assert "random: 10 of 60 questions have no answer" in " ".join(scores.notes)
    assert scores.to_dict()["n_unanswered"] == 10


def test_llava_layout_pairs_by_order_when_ids_do_not_line_up(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    questions, answers = _lines(QUESTIONS), _lines(ANSWERS)
    for number, (q, a) in enumerate(zip(questions, answers, strict=True), start=1):
        q["question_id"] = a["question_id"] = number  # one numbering for all: 1..180
    data = read_llava_pope(_write(tmp_path / "q.jsonl", questions), POPE)
    # adversarial's ids 1..60 are POPE's; random's 61..120 and popular's 121..180 are not
    assert data.paired_by == {"adversarial": "question_id", "random": "order", "popular": "order"}
    assert any("random: question ids do not line up" in note for note in data.notes)
    scores = score_llava_pope(data, read_pope_answers(_write(tmp_path / "a.jsonl", answers)))
    by_id = score_llava_pope(read_llava_pope(QUESTIONS, POPE), read_pope_answers(ANSWERS))
    for split in by_id.splits:
        assert scores.splits[split].metrics == by_id.splits[split].metrics
    assert "paired by order" in scores.table()


def test_llava_layout_refuses_label_files_of_another_pope_version(tmp_path):
    """LLaVA's random questions come from POPE's commit e3e3926, whose random file lacks lines
    of today's (here: lines 18 and 40 of the first 60); paired with today's file by id or by order
    they would ask about other objects, so this is an error, not numbers."""
    from mmlens.benchmarks.pope_llava import read_llava_pope

    questions = _lines(QUESTIONS)
    random = [q for q in questions if q["category"] == "random"]
    older = [q for i, q in enumerate(random, start=1) if i not in (18, 40)]
    for number, q in enumerate(older, start=1):
        q["question_id"] = 10_000_000 + number
    rows = [q for q in questions if q["category"] != "random"] + older
    with pytest.raises(BenchmarkDataError) as error:
        read_llava_pope(_write(tmp_path / "q.jsonl", rows), POPE)
    message = str(error.value)
    assert "split 'random'" in message and "question 10000018" in message
    assert "'Is there a person in the image?'" in message and "label 18" in message
    assert "e3e3926" in message and "coco_pope_random.json" in message


def test_llava_layout_a_subset_of_the_labels_is_noted(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope

    rows = [q for q in _lines(QUESTIONS) if q["question_id"] % 10_000_000 <= 30]
    data = read_llava_pope(_write(tmp_path / "q.jsonl", rows), POPE)
    assert set(data.paired_by.values()) == {"question_id"} and len(data.items) == 90
    assert "random: the question file asks 30 of the 60 questions in coco_pope_random.json" in (
        data.notes
    )


def test_llava_layout_mean_needs_all_three_splits(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    rows = [q for q in _lines(QUESTIONS) if q["category"] != "popular"]
    data = read_llava_pope(_write(tmp_path / "q.jsonl", rows), POPE)
    answers = {qid: t for qid, t in read_pope_answers(ANSWERS).items() if qid < 20_000_000}
    scores = score_llava_pope(data, answers)
    assert scores.mean_f1 is None and list(scores.splits) == ["random", "adversarial"]
    assert "no mean F1: no F1 for popular" in scores.notes
    assert "mean F1 over random, popular, adversarial: n/a" in scores.table()


def test_llava_layout_errors(tmp_path):
    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    rows = _lines(QUESTIONS)
    no_category = [{k: v for k, v in r.items() if k != "category"} for r in rows]
    with pytest.raises(BenchmarkDataError, match="question 1 has no 'category'"):
        read_llava_pope(_write(tmp_path / "q.jsonl", no_category), POPE)
    with pytest.raises(BenchmarkDataError, match="POPE's own question file"):
        read_llava_pope(POPE / "coco_pope_random.json", POPE)
    twice = _write(tmp_path / "twice.jsonl", rows + rows[:1])
    with pytest.raises(BenchmarkDataError, match="question_id 1 appears twice"):
        read_llava_pope(twice, POPE)
    labels = tmp_path / "coco"
    labels.mkdir()
    for split in ("random", "adversarial"):
        (labels / f"coco_pope_{split}.json").write_bytes(
            (POPE / f"coco_pope_{split}.json").read_bytes()
        )
    with pytest.raises(
        BenchmarkDataError, match="no label file for split 'popular'.*coco_pope_popular.json"
    ):
        read_llava_pope(QUESTIONS, labels)
    with pytest.raises(BenchmarkDataError, match="annotation folder not found"):
        read_llava_pope(QUESTIONS, tmp_path / "nowhere")
    data = read_llava_pope(QUESTIONS, POPE)
    with pytest.raises(
        BenchmarkDataError, match=r"2 answers .* not in the question file \(first: \[61, 99\]\)"
    ):
        score_llava_pope(data, {1: "Yes", 61: "No", 99: "no"})
    with pytest.raises(BenchmarkDataError, match="holds no answers"):
        read_pope_answers(_write(tmp_path / "empty.jsonl", []))
    with pytest.raises(BenchmarkDataError, match="no POPE answers to score"):
        score_llava_pope(data, {})


def test_llava_layout_other_label_file_names_and_dataframes(tmp_path):
    """A-OKVQA's and GQA's label files are named aokvqa_pope_{split}.json, gqa_pope_...: found
    when the coco_ name is absent and one file matches."""
    import pandas as pd

    from mmlens.benchmarks.pope_llava import read_llava_pope, score_llava_pope

    labels = tmp_path / "aokvqa"
    labels.mkdir()
    for split in ("random", "popular", "adversarial"):
        source = (POPE / f"coco_pope_{split}.json").read_bytes()
        (labels / f"aokvqa_pope_{split}.json").write_bytes(source)
    data = read_llava_pope(QUESTIONS, labels)
    assert data.label_files["random"].name == "aokvqa_pope_random.json"
    frame = pd.DataFrame(_lines(ANSWERS))[["question_id", "text"]]
    scores = score_llava_pope(data, frame)
    assert scores.mean_f1 == pytest.approx((50 / 59 + 48 / 60 + 40 / 60) / 3)
