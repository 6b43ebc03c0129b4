"""POPE (Li et al., 2023): "Is there a <object> in the image?" over MS-COCO val2014.

Question files are POPE's JSON lines (`question_id`, `image`, `text`, `label`), one per subset
(`coco_pope_random.json`, `_popular`, `_adversarial`); images are COCO val2014's
(`COCO_val2014_*.jpg`). Answers are the JSON lines LLaVA's evaluation writes (`question_id`,
`text`).

Scoring follows POPE's `evaluate.py`: keep the text before the first ".", drop commas, split on
spaces; the answer is "no" if one of the words is `No`, `not` or `no`, else "yes". "yes" is the
positive class. The reference pairs answers with questions by line order; mmlens pairs them by
`question_id` (the same when the answer file is in question order) and reports questions left
without an answer instead of mis-pairing them. LLaVA's layout (one question file for all splits,
scored per split against these files) is in `pope_llava`.
"""

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mmlens.benchmarks.items import (
    BenchmarkItem,
    ItemSet,
    Skipped,
    as_int_id,
    id_text_pairs,
    read_json_lines,
    read_outputs,
    require_keys,
)
from mmlens.benchmarks.scores import Scores, f1_score, ratio
from mmlens.errors import BenchmarkDataError

SUBSETS = ("random", "popular", "adversarial")
LLAVA_ID_STRIDE = 10_000_000  # LLaVA's question ids: stride * split index + POPE's id
NEGATIVE_WORDS = ("No", "not", "no")


def pope_answer(text: str) -> str:
    """POPE's reading of a free-text answer: "yes" or "no"."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if any(word in NEGATIVE_WORDS for word in words) else "yes"


def _subset(path: Path) -> str:
    match = re.search(r"(random|popular|adversarial)", path.stem)
    return match.group(1) if match else path.stem


def read_pope(questions: str | Path, images: str | Path | None = None) -> ItemSet:
    """POPE's questions as items; with `images`, a question whose image is missing is skipped."""
    path = Path(questions)
    subset = _subset(path)
    items, skipped, seen = [], [], set()
    for number, row in enumerate(read_json_lines(path, "POPE questions"), start=1):
        where = f"{path} line {number}"
        require_keys(row, ("question_id", "image", "text", "label"), where)
        qid = as_int_id(row["question_id"], where)
        if qid in seen:
            raise BenchmarkDataError(f"{where}: question_id {qid} appears twice.")
        seen.add(qid)
        label = str(row["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise BenchmarkDataError(f"{where}: label {row['label']!r} is not 'yes' or 'no'.")
        image = Path(images) / row["image"] if images is not None else Path(row["image"])
        if images is not None and not image.is_file():
            skipped.append(Skipped(qid, f"image missing: {image}"))
            continue
        items.append(
            BenchmarkItem("pope", qid, image, row["text"], "discriminative", subset, label)
        )
    return ItemSet(tuple(items), tuple(skipped))


def read_pope_answers(path: str | Path) -> dict[int, str]:
    """question_id -> answer text, from LLaVA-style answer JSON lines."""
    pairs = read_outputs(path, "question_id", "text", "POPE answers")
    if not pairs:
        raise BenchmarkDataError(
            f"{path} holds no answers; expected JSON lines of question_id and text (the answer "
            "file LLaVA's model_vqa_loader writes)."
        )
    answers = dict(pairs)
    if len(answers) < len(pairs):
        repeated = sorted(i for i, n in Counter(i for i, _ in pairs).items() if n > 1)
        raise BenchmarkDataError(f"{path}: question_id {repeated[:5]} answered twice.")
    return answers


def pope_metrics(frame: pd.DataFrame) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 and yes-ratio from `label` and `answer` columns of
    "yes"/"no" ("yes" positive)."""
    yes_pred, yes_true = frame["answer"] == "yes", frame["label"] == "yes"
    tp = int((yes_pred & yes_true).sum())
    fp = int((yes_pred & ~yes_true).sum())
    tn = int((~yes_pred & ~yes_true).sum())
    fn = int((~yes_pred & yes_true).sum())
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, len(frame)),
        "precision": precision,
        "recall": recall,
        "f1": f1_score(precision, recall),
        "yes_ratio": ratio(int(yes_pred.sum()), len(frame)),
    }


def score_pope(items: ItemSet, answers: Mapping[int, str] | pd.DataFrame) -> Scores:
    """POPE's metrics over the questions that have an answer; unknown answer ids are an error.

    `answers` maps question_id -> text, or is a DataFrame with `question_id` and `text` columns.
    """
    pairs = id_text_pairs(answers, "question_id", "text", "POPE answers")
    answers = dict(pairs)
    if len(answers) < len(pairs):
        raise BenchmarkDataError("POPE answers: a question_id is answered twice.")
    known = {item.id for item in items} | {s.id for s in items.skipped}
    unknown = sorted(set(answers) - known)
    if unknown:
        llava = (
            " Ids from 10,000,000 up are LLaVA's numbering: score LLaVA's answers against its "
            "question file and POPE's label folder (--annotation-dir)."
            if unknown[-1] >= LLAVA_ID_STRIDE
            else ""
        )
        raise BenchmarkDataError(
            f"{len(unknown)} answers have a question_id that is not among the questions "
            f"(first: {unknown[:5]}); are the answers for another subset?{llava}"
        )
    rows = [
        {
            "question_id": item.id,
            "subset": item.kind,
            "label": item.truth,
            "text": answers[item.id],
            "answer": pope_answer(answers[item.id]),
        }
        for item in items
        if item.id in answers
    ]
    frame = pd.DataFrame(rows, columns=["question_id", "subset", "label", "text", "answer"])
    frame["correct"] = frame["answer"] == frame["label"]
    missing = sum(1 for item in items if item.id not in answers)
    notes = []
    if missing:
        notes.append(f"{missing} of {len(items)} questions have no answer and are not scored")
    if items.skipped:
        notes.append(items.summary())
    return Scores(
        "POPE",
        pope_metrics(frame),
        {"n_scored": len(frame), "n_unanswered": missing, "n_skipped": len(items.skipped)},
        tuple(notes),
        items=frame,
    )
