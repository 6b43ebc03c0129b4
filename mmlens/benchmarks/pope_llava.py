"""POPE in LLaVA's layout: one question file for all splits, scored per split as LLaVA does.

LLaVA's evaluation (haotian-liu/LLaVA `scripts/v1_5/eval/pope.sh`) writes one question file,
`llava_pope_test.jsonl` (`question_id`, `image`, `text`, `category` = the split), one answer file
(`question_id`, `prompt`, `text`, ...), and `llava/eval/eval_pope.py` scores it against POPE's
label files `coco_pope_{split}.json` in an annotation folder, one split at a time. Papers report
each split and the F1 averaged over random, popular and adversarial.

How eval_pope.py pairs things, and what mmlens does instead:

- answers are read as POPE reads them (`pope.pope_answer`: first sentence, commas dropped, "no"
  if a word is `No`, `not` or `no`), the same rule in both tools;
- eval_pope.py keeps the answers whose question has the split's category and zips them, in
  answer-file order, with the label file's lines: right only when the answer file lists every
  question in label-file order. mmlens pairs each answer with its question by `question_id`,
  and each question with its label by id where the ids line up: LLaVA numbers a split's
  questions `10,000,000 * k + POPE's id` (adversarial 1.., random 10000001.., popular
  20000001..), so POPE's id is `question_id % 10,000,000`. Where they do not line up, the k-th
  question of the split is paired with the k-th label line, as eval_pope.py does, and a note
  says so. Either way every pair must ask the same thing (same image, same question text; the
  spelling "imange" of POPE's older files counts as "image"), else it is an error: label files of
  another POPE version would silently mis-pair otherwise (LLaVA's question file was made from
  POPE's commit e3e3926, whose random split has 2,910 questions; POPE's current one has 3,000);
- unanswered questions are counted and left out (eval_pope.py would shift the pairing), answers
  to unknown ids are an error (a KeyError there), and a metric with a zero denominator is None
  (a ZeroDivisionError there).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmlens.benchmarks.items import (
    BenchmarkItem,
    ItemSet,
    as_int_id,
    id_text_pairs,
    read_json_lines,
    require_keys,
)
from mmlens.benchmarks.pope import (
    LLAVA_ID_STRIDE,
    SUBSETS,
    pope_answer,
    pope_metrics,
    read_pope,
)
from mmlens.benchmarks.scores import Scores
from mmlens.errors import BenchmarkDataError

PAPER_SPLITS = SUBSETS  # the splits whose F1 papers average
VERSION_HINT = (
    "The label files must be those the question file was made from (for LLaVA's "
    "llava_pope_test.jsonl: POPE's output/coco/ at commit e3e3926, whose random split has 2,910 "
    "questions; POPE's current coco_pope_random.json has 3,000 and does not line up with it)."
)


@dataclass(frozen=True)
class LlavaPope:
    """LLaVA's POPE questions with their POPE labels.

    `items` keeps the question file's order; each item's `kind` is its split, `prompt` LLaVA's
    text, `truth` the label and `extra["label_id"]` the label's id in its file. `paired_by` says
    per split how questions met labels: "question_id" or "order" (eval_pope.py's rule).
    """

    items: ItemSet
    label_files: dict[str, Path]
    paired_by: dict[str, str]
    n_labels: dict[str, int]
    notes: tuple[str, ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits, papers' order first (random, popular, adversarial), then any others."""
        present = list(dict.fromkeys(item.kind for item in self.items))
        return tuple(s for s in PAPER_SPLITS if s in present) + tuple(
            s for s in present if s not in PAPER_SPLITS
        )


def is_llava_question_file(path: str | Path) -> bool:
    """Whether the file's first entry looks like LLaVA's (a `category`, no `label`)."""
    try:
        rows = read_json_lines(path, "POPE questions")
    except BenchmarkDataError:
        return False  # the reader that is used next says what is wrong
    return bool(rows) and "category" in rows[0] and "label" not in rows[0]


def read_llava_questions(path: str | Path) -> list[dict[str, Any]]:
    """LLaVA's question file as checked rows: int `question_id`, `image`, `text`, `category`."""
    path = Path(path)
    rows = read_json_lines(path, "LLaVA's POPE question file (llava_pope_test.jsonl)")
    if not rows:
        raise BenchmarkDataError(f"{path} holds no questions; expected LLaVA's JSON lines.")
    seen: set[int] = set()
    for number, row in enumerate(rows, start=1):
        where = f"{path} question {number}"
        if "category" not in row:
            hint = (
                " It looks like POPE's own question file (it has 'label'): score it without "
                "--annotation-dir."
                if "label" in row
                else ""
            )
            raise BenchmarkDataError(
                f"{where} has no 'category' (keys: {sorted(row)}); LLaVA's question file names "
                f"each question's split (random, popular or adversarial) in 'category'.{hint}"
            )
        require_keys(row, ("question_id", "image", "text"), where)
        row["question_id"] = as_int_id(row["question_id"], where)
        if row["question_id"] in seen:
            raise BenchmarkDataError(f"{where}: question_id {row['question_id']} appears twice.")
        seen.add(row["question_id"])
        if not isinstance(row["category"], str) or not row["category"]:
            raise BenchmarkDataError(f"{where}: category {row['category']!r} is not a split name.")
    return rows


def label_file(annotation_dir: str | Path, split: str) -> Path:
    """POPE's label file for `split`: `coco_pope_{split}.json`, else the one `*_pope_{split}.json`
    (A-OKVQA's and GQA's files are named that way)."""
    folder = Path(annotation_dir)
    if not folder.is_dir():
        raise BenchmarkDataError(
            f"annotation folder not found: {folder}; give the folder of POPE's label files "
            "coco_pope_{random,popular,adversarial}.json (POPE's output/coco/)."
        )
    exact = folder / f"coco_pope_{split}.json"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"*_pope_{split}.json"))
    if len(found) == 1:
        return found[0]
    present = sorted(p.name for p in folder.glob("*.json")) or "no .json files"
    several = f"; several match: {[p.name for p in found]}" if found else ""
    raise BenchmarkDataError(
        f"no label file for split {split!r} in {folder}: expected coco_pope_{split}.json "
        f"(POPE's output/coco/){several}; the folder has {present}."
    )


def _asks(text: str) -> str:
    """A question's text for comparison: spacing and case ignored, POPE's old "imange" fixed."""
    return " ".join(text.replace("imange", "image").split()).casefold()


def _pair(
    questions: list[dict[str, Any]], labels: ItemSet, split: str, where: Path, file: Path
) -> tuple[list[tuple[dict[str, Any], BenchmarkItem]], str]:
    """Each question of one split with its label line, by id where the ids line up, else by
    order; every pair checked to ask the same thing."""
    by_id = {item.id: item for item in labels}
    ids = [q["question_id"] % LLAVA_ID_STRIDE for q in questions]
    if all(i in by_id for i in ids) and len(set(ids)) == len(ids):
        pairs = [(q, by_id[i]) for q, i in zip(questions, ids, strict=True)]
        paired_by = "question_id"
    elif len(questions) > len(labels):
        raise BenchmarkDataError(
            f"split {split!r}: {where.name} has {len(questions)} questions, {file} only "
            f"{len(labels)} labels, and the ids do not line up (question "
            f"{questions[0]['question_id']} -> POPE id {ids[0]}). {VERSION_HINT}"
        )
    else:
        pairs = list(zip(questions, labels, strict=False))
        paired_by = "order"
    wrong = [
        (q, label)
        for q, label in pairs
        if Path(q["image"]) != label.image or not _asks(q["text"]).startswith(_asks(label.prompt))
    ]
    if wrong:
        q, label = wrong[0]
        how = "same id" if paired_by == "question_id" else "same position"
        raise BenchmarkDataError(
            f"split {split!r}: {len(wrong)} of {len(pairs)} questions in {where.name} do not "
            f"match their label lines in {file.name} (paired by {how}); first: question "
            f"{q['question_id']} asks {q['text'].splitlines()[0]!r} of {q['image']}, label "
            f"{label.id} asks {label.prompt!r} of {label.image}. {VERSION_HINT}"
        )
    return pairs, paired_by


def read_llava_pope(question_file: str | Path, annotation_dir: str | Path) -> LlavaPope:
    """LLaVA's question file joined with POPE's label files (one per split, in the folder)."""
    where = Path(question_file)
    rows = read_llava_questions(where)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_split.setdefault(row["category"], []).append(row)
    labelled: dict[int, BenchmarkItem] = {}
    files, paired_by, n_labels, notes = {}, {}, {}, []
    for split, questions in by_split.items():
        files[split] = label_file(annotation_dir, split)
        labels = read_pope(files[split])
        pairs, paired_by[split] = _pair(questions, labels, split, where, files[split])
        n_labels[split] = len(labels)
        if paired_by[split] == "order":
            notes.append(
                f"{split}: question ids do not line up with {files[split].name}'s ids; paired "
                "by order as eval_pope.py does (checked: same image and question on every line)"
            )
        if len(labels) != len(questions):
            notes.append(
                f"{split}: the question file asks {len(questions)} of the {len(labels)} "
                f"questions in {files[split].name}"
            )
        for q, label in pairs:
            labelled[q["question_id"]] = BenchmarkItem(
                "pope",
                q["question_id"],
                Path(q["image"]),
                q["text"],
                "discriminative",
                split,
                label.truth,
                {"label_id": label.id},
            )
    items = ItemSet(tuple(labelled[row["question_id"]] for row in rows))
    return LlavaPope(items, files, paired_by, n_labels, tuple(notes))


@dataclass(frozen=True)
class PopeSplitScores:
    """POPE's metrics per split (each a `Scores`) and the F1 averaged over random, popular and
    adversarial (None unless all three are scored with a defined F1), as papers report them."""

    splits: dict[str, Scores]
    mean_f1: float | None
    paired_by: dict[str, str]
    notes: tuple[str, ...] = ()
    items: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False, repr=False)
    benchmark: str = "POPE"

    def to_dict(self) -> dict[str, Any]:
        """`splits` (each split's metrics as fractions and counts), `mean_f1`, totals."""
        return {
            "splits": {name: scores.to_dict() for name, scores in self.splits.items()},
            "mean_f1": self.mean_f1,
            "mean_f1_over": list(PAPER_SPLITS),
            "n_scored": sum(s.counts["n_scored"] for s in self.splits.values()),
            "n_unanswered": sum(s.counts["n_unanswered"] for s in self.splits.values()),
            "paired_by": {name: self.paired_by[name] for name in self.splits},
        }

    def table(self, percent: bool = True) -> str:
        """One line per split (rates in % with two decimals by default) and the mean F1."""
        names = ["accuracy", "precision", "recall", "f1", "yes_ratio"]
        width = max(len("split"), *(len(name) for name in self.splits))

        def shown(value: float | None) -> str:
            if value is None:
                return "n/a"
            return f"{100 * value:.2f}" if percent else f"{value:.4f}"

        rates = "rates in %" if percent else "rates as fractions"
        lines = [
            f"POPE per split ({rates}; n = answers scored)",
            "  " + "split".ljust(width) + "".join(f"  {n:>9}" for n in names) + f"  {'n':>6}",
        ]
        for name, scores in self.splits.items():
            cells = "".join(f"  {shown(scores.metrics[n]):>9}" for n in names)
            lines.append(f"  {name.ljust(width)}{cells}  {scores.counts['n_scored']:>6}")
        total = sum(s.counts["n_scored"] for s in self.splits.values())
        over = ", ".join(PAPER_SPLITS)
        lines.append(f"  mean F1 over {over}: {shown(self.mean_f1)} ({total} answers)")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def score_llava_pope(data: LlavaPope, answers: Mapping[int, str] | pd.DataFrame) -> PopeSplitScores:
    """POPE's metrics per split over the answered questions; unknown answer ids are an error.

    `answers` maps question_id -> text, or is a DataFrame with `question_id` and `text` columns.
    """
    pairs = id_text_pairs(answers, "question_id", "text", "POPE answers")
    if not pairs:
        raise BenchmarkDataError("no POPE answers to score; the answer file is empty.")
    texts = dict(pairs)
    if len(texts) < len(pairs):
        raise BenchmarkDataError("POPE answers: a question_id is answered twice.")
    unknown = sorted(set(texts) - {item.id for item in data.items})
    if unknown:
        raise BenchmarkDataError(
            f"{len(unknown)} answers have a question_id that is not in the question file "
            f"(first: {unknown[:5]}); are the answers for another question file?"
        )
    columns = ["split", "question_id", "label_id", "label", "text", "answer"]
    frame = pd.DataFrame(
        [
            {
                "split": item.kind,
                "question_id": item.id,
                "label_id": item.extra["label_id"],
                "label": item.truth,
                "text": texts[item.id],
                "answer": pope_answer(texts[item.id]),
            }
            for item in data.items
            if item.id in texts
        ],
        columns=columns,
    )
    frame["correct"] = frame["answer"] == frame["label"]
    splits, notes = {}, list(data.notes)
    for split in data.splits:
        asked = sum(1 for item in data.items if item.kind == split)
        part = frame[frame["split"] == split]
        missing = asked - len(part)
        if missing:
            notes.append(f"{split}: {missing} of {asked} questions have no answer, not scored")
        counts = {"n_scored": len(part), "n_unanswered": missing}
        splits[split] = Scores(f"POPE {split}", pope_metrics(part), counts)
    f1s = [splits[s].metrics["f1"] if s in splits else None for s in PAPER_SPLITS]
    mean_f1 = None if None in f1s else sum(f1s) / len(f1s)  # type: ignore[arg-type]
    if mean_f1 is None:
        absent = [s for s, f1 in zip(PAPER_SPLITS, f1s, strict=True) if f1 is None]
        notes.append(f"no mean F1: no F1 for {', '.join(absent)}")
    return PopeSplitScores(splits, mean_f1, dict(data.paired_by), tuple(notes), items=frame)
